"""The embedded PostgreSQL (pgserver) used when DATABASE_URL is unset: who
starts it, who stops it.

Every process that uses it (serve, api, a command such as `domains add`)
records itself as a user in DATA_DIR/embedded-users, under a lock, before it
connects; the first one starts the server. `release()` (at the end of each
of those processes) removes the record, and the process that leaves no live
user behind stops the server (`pg_ctl stop -m fast`). A user that died
without releasing (kill -9) is dropped the next time the list is read, so a
crash keeps the server running only until the next command that uses it
ends. pg_ctl starts PostgreSQL in a session of its own: a Ctrl-C in the
terminal never reaches it, and it outlives the processes draining through it.

pgserver run as root creates a `pgserver` system user and widens the
permissions of the data directory's parents; run the service as a normal
user, or set DATABASE_URL, on a shared machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil

from .config import Settings

log = logging.getLogger("app.embedded")
# pgserver gives `pg_ctl start` a fixed 10 s; a busy machine can need longer.
# The server keeps starting after pg_ctl is given up on, and the next try
# finds it (the pool and the schema install wait for it to accept).
START_TRIES = 6
# pgserver logs every command it runs, with its output, at INFO.
logging.getLogger("pgserver").setLevel(logging.WARNING)

USERS = "embedded-users"  # under DATA_DIR: "pid start-time" of each process using the server
# The data directories this process is recorded as a user of (released at its end).
_held: set[Path] = set()


def _started_at(pid: int) -> str | None:
    """When process `pid` started, None if it is gone: with the pid, it names
    a process even after its pid is reused."""
    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except psutil.Error:
        return None


def _me() -> str:
    return f"{os.getpid()} {_started_at(os.getpid())}"


@contextlib.contextmanager
def _users(data_dir: Path) -> Iterator[set[str]]:
    """The live users of the server under `data_dir`, locked; changes are saved."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / USERS
    with open(data_dir / (USERS + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lines = path.read_text().splitlines() if path.exists() else []
        users = {line for line in lines if _started_at(int(line.split()[0])) == line.split()[1]}
        yield users
        path.write_text("".join(f"{user}\n" for user in sorted(users)))


def runtime_dir(data_dir: Path) -> None:
    """pgserver keeps its lock in the user's runtime directory (XDG_RUNTIME_DIR),
    which sudo, su and containers often leave unset (platformdirs then warns):
    give it one of ours under DATA_DIR, private to this user."""
    current = os.environ.get("XDG_RUNTIME_DIR")
    if current and os.path.isdir(current):
        return
    path = data_dir / "run"
    path.mkdir(mode=0o700, exist_ok=True)
    os.environ["XDG_RUNTIME_DIR"] = str(path)


def _running(pgdata: Path) -> bool:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    return _started_at(pid) is not None


def start(data_dir: str, announce: bool = False) -> str:
    """Start (or reuse) the embedded server under `data_dir` and record this
    process as its user; return its URL. `announce`: log where it is (the
    psql line) when this process is the one that started it."""
    directory = Path(data_dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    runtime_dir(directory)
    import pgserver

    path = directory / "pgdata"
    path.mkdir(exist_ok=True)
    with _users(directory) as users:
        was_running = _running(path)
        for attempt in range(1, START_TRIES + 1):
            try:
                server = pgserver.get_server(path, cleanup_mode=None)  # stopped by release()
                break
            except subprocess.TimeoutExpired:
                if attempt == START_TRIES:
                    raise
                log.warning("[db] the embedded PostgreSQL is slow to start; waiting (%d)", attempt)
        users.add(_me())
        _held.add(directory)
    url: str = server.get_uri()
    if announce and not was_running:
        log.warning(
            "[db] DATABASE_URL is unset: using the embedded PostgreSQL in %s; look at the "
            "tables with: psql '%s'",
            path,
            url,
        )
    return url


def release() -> None:
    """This process is done with the embedded server (if it used one): the
    last user stops it. Safe to call more than once."""
    while _held:
        directory = _held.pop()
        with _users(directory) as users:
            users.discard(_me())
            if users or not _running(directory / "pgdata"):
                continue
            from pgserver._commands import pg_ctl  # type: ignore[attr-defined]  # made at import

            user = "pgserver" if os.geteuid() == 0 else None  # as pgserver runs it
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=directory / "pgdata", user=user)
            log.debug("[db] stopped the embedded PostgreSQL in %s", directory / "pgdata")


def database_url(settings: Settings, announce: bool = False) -> str:
    """The one place settings become a database URL: DATABASE_URL, or the
    embedded server under DATA_DIR (started if it is not running)."""
    return settings.database_url or start(settings.data_dir, announce)
