"""Real spam scanners for the tests: Debian's rspamd and SpamAssassin's spamd
(installed by scripts/test), each started on a free loopback port, and a
scanner that accepts connections and never answers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import free_port

# rspamd compiles its regexps once into its database directory: kept between runs.
RSPAMD_CACHE = Path(tempfile.gettempdir()) / "tempmail-test-rspamd-db"
START_TIMEOUT = 180.0  # a first rspamd start compiles its regexps (hyperscan)


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the scanner exited at start:\n{log.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"the scanner did not listen within {START_TIMEOUT:.0f}s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def rspamd_config(root: Path, port: int, dns: str) -> list[str]:
    """Overrides of Debian's configuration: our port, no other workers, our DNS."""
    local = root / "local" / "override.d"
    local.mkdir(parents=True)
    (local / "worker-normal.inc").write_text(f'bind_socket = "127.0.0.1:{port}";\ncount = 1;\n')
    controller = free_port()
    (local / "worker-controller.inc").write_text(f'bind_socket = "127.0.0.1:{controller}";\n')
    for worker in ("worker-proxy.inc", "worker-fuzzy.inc"):
        (local / worker).write_text("enabled = false;\n")
    host, _, dns_port = dns.partition(":")
    (local / "options.inc").write_text(
        f'dns {{ nameserver = ["{host}:{dns_port}"]; timeout = 0.5s; retransmits = 1; }}\n'
    )
    (local / "logging.inc").write_text('type = "console";\nlevel = "error";\n')
    RSPAMD_CACHE.mkdir(exist_ok=True)
    return [
        f"--var=LOCAL_CONFDIR={root / 'local'}",
        f"--var=DBDIR={RSPAMD_CACHE}",
        f"--var=RUNDIR={root}",
        f"--var=LOGDIR={root}",
    ]


@pytest.fixture(scope="session")
def rspamd(quiet_dns, tmp_path_factory) -> Iterator[str]:
    """rspamd's normal worker on a free port: its SPAM_SCANNER URL."""
    if shutil.which("rspamd") is None:
        pytest.skip("rspamd is not installed (scripts/test installs Debian's package)")
    root = tmp_path_factory.mktemp("rspamd")
    port = free_port()
    log = root / "rspamd.log"
    command = ["rspamd", "-f", "-i", "-u", "root", "-g", "root"]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command + rspamd_config(root, port, quiet_dns.address),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_listening(port, process, log)
        yield f"rspamd://127.0.0.1:{port}"
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def spamd(tmp_path_factory) -> Iterator[str]:
    """SpamAssassin's spamd (local tests only: no network) on a free port."""
    if shutil.which("spamd") is None:
        pytest.skip("spamd is not installed (scripts/test installs Debian's package)")
    port = free_port()
    log = tmp_path_factory.mktemp("spamd") / "spamd.log"
    command = ["spamd", "-L", "-i", "127.0.0.1", "-A", "127.0.0.1", "-p", str(port)]
    command += ["-m", "1", "-s", "stderr", "-u", "nobody"]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_listening(port, process, log)
        yield f"spamd://127.0.0.1:{port}"
    finally:
        _stop(process)


class SilentScanner:
    """Accepts connections and reads, never answers: a hung scanner."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)

    def stop(self) -> None:
        self.sock.close()
        for conn in self.connections:
            conn.close()
