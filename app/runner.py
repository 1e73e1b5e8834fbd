"""`tempmail run` (what scripts/serve runs): the SMTP service and the HTTP
API side by side, stopped together.

Both run as children in process groups of their own, so a Ctrl-C in the
terminal reaches this process only: each Ctrl-C or SIGTERM is passed to both
as one SIGTERM (the first drains, a second hurries). SIGHUP is the terminal
closing when there is one (both stop), else a reload for the SMTP service.
A child that exits stops the other; our exit status is the first failure's.
Each child says it is ready over the notify protocol (app/listening.py: a
datagram socket of ours per child, in NOTIFY_SOCKET); once both have, one
line says where SMTP and the page are, and whoever started us is told the
same way. Signals and child exits wake the one `select` through a pipe
(signal.set_wakeup_fd).

`--background` starts a detached copy (a session of its own, its output in
DATA_DIR/run.log) and returns once it is ready, printing that line, or once
it has failed, printing its log. Every run holds a lock on DATA_DIR/run.pid
(which names it) while it runs: a second run is refused, and `--stop`
signals the holder and waits for the lock to be let go.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from . import listening
from .config import Settings

log = logging.getLogger("app.runner")
HELP = "run the SMTP service and the HTTP API together (what scripts/serve runs)"
LOG = "run.log"  # under DATA_DIR, for --background
PID = "run.pid"  # under DATA_DIR: the running one's pid, locked while it runs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--background",
        action="store_true",
        help=f"return once both listen; their log goes to DATA_DIR/{LOG}",
    )
    mode.add_argument("--stop", action="store_true", help="stop the one running here and wait")


def main(settings: Settings, args: argparse.Namespace) -> int:
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    if args.stop:
        return stop(data_dir)
    # The children read the same settings file: named to them only if it was named to us.
    options = ["--env-file", args.env_file_named] if args.env_file_named else []
    if args.background:  # the detached copy takes the lock (a second one is refused there)
        if (pid := running_pid(data_dir)) is not None:
            print(f"already running here (pid {pid}): scripts/serve --stop stops it")
            return 1
        return start_background(data_dir, options)
    if (pid := claim(data_dir)) is not None:
        print(f"already running here (pid {pid}): scripts/serve --stop stops it")
        return 1
    return Together(options).run()


# Waiting: for notify messages, signals and child exits in one select -----------------------


@contextlib.contextmanager
def notify_socket(directory: str, name: str) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket for one process's notify messages, and its path."""
    path = str(Path(directory) / name)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(path)
        yield sock, path
    finally:
        sock.close()


def status_of(sock: socket.socket) -> str | None:
    """The STATUS of the READY=1 message waiting on `sock` (None for another message)."""
    lines = sock.recv(4096).decode(errors="replace").splitlines()
    fields = dict(line.partition("=")[::2] for line in lines)
    return fields.get("STATUS", "") if fields.get("READY") == "1" else None


@contextlib.contextmanager
def wakeups() -> Iterator[int]:
    """A pipe's read end that becomes readable at every signal we handle, child
    exits (SIGCHLD) included: what `select` waits on beside the sockets."""
    read, write = os.pipe()
    for fd in (read, write):
        os.set_blocking(fd, False)
    previous = signal.set_wakeup_fd(write)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # handled: it writes to the pipe
    try:
        yield read
    finally:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.set_wakeup_fd(previous)
        os.close(read)
        os.close(write)


def wait_for(readable: list[socket.socket], wakeup: int) -> list[socket.socket]:
    """The sockets with a message, once any is readable or a signal came."""
    waited: list[socket.socket | int] = [*readable, wakeup]
    ready, _, _ = select.select(waited, [], [])
    if wakeup in ready:
        with contextlib.suppress(BlockingIOError):
            os.read(wakeup, 4096)
    return [sock for sock in readable if sock in ready]


class Together:
    """The two children, their readiness, and the signals passed on to them."""

    def __init__(self, options: list[str]) -> None:
        self.options = options
        self.terminal = sys.stdin is not None and sys.stdin.isatty()
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = False

    def run(self) -> int:
        with (
            tempfile.TemporaryDirectory(prefix="tempmail-run-") as directory,
            notify_socket(directory, "serve") as (smtp, smtp_path),
            notify_socket(directory, "api") as (api, api_path),
            wakeups() as wakeup,
        ):
            signal.signal(signal.SIGINT, self.stop)
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGHUP, self.stop if self.terminal else self.reload)
            self.start("serve", smtp_path)
            self.start("api", api_path)
            return self.supervise({smtp: "serve", api: "api"}, wakeup)

    def start(self, name: str, notify: str) -> None:
        self.children[name] = subprocess.Popen(
            [sys.executable, "-m", "app", *self.options, name],
            env={**os.environ, "NOTIFY_SOCKET": notify},
            stdin=subprocess.DEVNULL,
            process_group=0,  # the terminal's Ctrl-C is ours to pass on, once
        )

    def supervise(self, sockets: dict[socket.socket, str], wakeup: int) -> int:
        """Until both children have exited: note readiness, stop the other when one exits."""
        statuses: dict[str, str] = {}
        running = dict(self.children)
        first_failure = 0
        while running:
            for name, child in list(running.items()):
                if child.poll() is not None:
                    del running[name]
                    first_failure = first_failure or self.exit_status(child.returncode)
                    if not self.stopping:  # not a signal to pass on: one stop, no hurry
                        self.stop()
            if not running:
                break
            for sock in wait_for(list(sockets), wakeup):
                status = status_of(sock)
                if status is not None and sockets[sock] not in statuses:
                    statuses[sockets[sock]] = status
                    if len(statuses) == 2 and not self.stopping:
                        self.say_ready(statuses)
        return first_failure

    def exit_status(self, code: int) -> int:
        """A child's status as ours: dying of the SIGTERM we sent is a clean stop
        (uvicorn ends that way once drained)."""
        if self.stopping and code in (-signal.SIGTERM, -signal.SIGINT):
            return 0
        return 128 - code if code < 0 else code

    def say_ready(self, statuses: dict[str, str]) -> None:
        line = f"ready: {statuses['serve']}, {statuses['api']}"
        log.info("[run] %s%s", line, " (Ctrl-C stops both)" if self.terminal else "")
        listening.ready(line)

    def stop(self, signum: int = signal.SIGTERM, frame: object = None) -> None:
        """Ask every running child to stop (each call once more: the second hurries)."""
        self.stopping = True
        self.send(signal.SIGTERM, ("serve", "api"))

    def reload(self, signum: int, frame: object) -> None:
        self.send(signal.SIGHUP, ("serve",))

    def send(self, signum: int, names: tuple[str, ...]) -> None:
        for name in names:
            child = self.children.get(name)
            if child is not None and child.poll() is None:
                child.send_signal(signum)


# Background, the pid file, --stop ----------------------------------------------------------


def claim(data_dir: Path) -> int | None:
    """Take DATA_DIR/run.pid's lock for the rest of this process, naming it;
    None, or the pid of the run that holds it already. The descriptor is
    never closed: the kernel lets the lock go once this process has ended,
    which is when `--stop` returns."""
    fd = os.open(data_dir / PID, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        with os.fdopen(fd) as file:
            return int(file.read().strip() or 0)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return None


def running_pid(data_dir: Path) -> int | None:
    """The pid of the run holding DATA_DIR/run.pid's lock, None if none does."""
    path = data_dir / PID
    if not path.exists():
        return None
    with open(path) as file:
        try:
            fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return int(file.read().strip() or 0) or None
    return None


def stop(data_dir: Path) -> int:
    pid = running_pid(data_dir)
    if pid is None:
        print("nothing is running here", file=sys.stderr)
        return 0
    os.kill(pid, signal.SIGTERM)
    with open(data_dir / PID) as file:
        fcntl.flock(file, fcntl.LOCK_SH)  # let go once it has ended, after its children
    print(f"stopped (pid {pid})", file=sys.stderr)
    return 0


def start_background(data_dir: Path, options: list[str]) -> int:
    """Start `run` detached; wait until it is ready (0) or has exited (its status)."""
    log_path = data_dir / LOG
    with (
        tempfile.TemporaryDirectory(prefix="tempmail-run-") as directory,
        notify_socket(directory, "run") as (sock, path),
        open(log_path, "wb") as log,
        wakeups() as wakeup,
    ):
        child = detach(options, path, log)
        while child.poll() is None:
            for ready in wait_for([sock], wakeup):
                if (status := status_of(ready)) is not None:
                    print(f"{status}; log in {log_path}; stop: scripts/serve --stop")
                    return 0
    sys.stderr.write(log_path.read_text(errors="replace"))
    return child.returncode or 1


def detach(options: list[str], notify: str, log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "app", *options, "run"],
        env={**os.environ, "NOTIFY_SOCKET": notify},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,  # no terminal: it outlives this shell
    )
