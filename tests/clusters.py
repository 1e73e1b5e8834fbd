"""PostgreSQL clusters made by a test: a primary and a streaming replica of
it, with Debian's PostgreSQL 15 programs, on free ports, removed afterwards.

initdb refuses to run as root, so the clusters belong to the `postgres`
user when the tests run as root, and live in a directory of their own under
the system's temporary directory (pytest's tmp_path is private to root).
Every server is started with `pg_ctl -w` (bounded by its `-t`) and stopped
with `-m immediate` in the fixture's finally, failure or not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from .helpers import free_port

BIN = Path("/usr/lib/postgresql/15/bin")
START_TIMEOUT = 60  # seconds pg_ctl waits for a server to accept connections


def available() -> bool:
    return (BIN / "initdb").exists() and (BIN / "pg_basebackup").exists()


def _owner() -> str | None:
    """The user the clusters run as: `postgres` when we are root, else us."""
    return "postgres" if os.geteuid() == 0 else None


def _run(*argv: str | Path) -> None:
    done = subprocess.run(
        [str(a) for a in argv], user=_owner(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{argv[0]} failed:\n{done.stdout}\n{done.stderr}"


@dataclasses.dataclass
class Cluster:
    directory: Path
    port: int
    started: bool = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def configure(self, lines: str) -> None:
        with (self.directory / "postgresql.conf").open("a") as conf:
            conf.write(lines)

    def start(self) -> None:
        log = self.directory.parent / f"{self.directory.name}.log"
        self.started = True
        _run(BIN / "pg_ctl", "-D", self.directory, "-l", log, "-w", "-t", START_TIMEOUT, "start")

    def reload(self) -> None:
        _run(BIN / "pg_ctl", "-D", self.directory, "reload")

    def stop(self) -> None:
        if self.started:
            _run(BIN / "pg_ctl", "-D", self.directory, "-m", "immediate", "-w", "stop")
            self.started = False


def _settings(port: int, sockets: Path) -> str:
    return (
        f"\nport = {port}\nlisten_addresses = '127.0.0.1'\n"
        f"unix_socket_directories = '{sockets}'\n"
        "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
        "max_connections = 50\nshared_buffers = 32MB\n"
    )


@contextlib.contextmanager
def primary_and_replica(
    setup: Callable[[str], None], apply_delay: str = "0"
) -> Iterator[tuple[Cluster, Cluster]]:
    """A primary, `setup(its URL)` run on it, and a hot standby copied after
    that, streaming from it (replay delayed by `apply_delay`,
    recovery_min_apply_delay's notation); both removed after."""
    base = Path(tempfile.mkdtemp(prefix="tempmail-clusters-"))
    owner = _owner()
    if owner:
        shutil.chown(base, owner)
    primary = Cluster(base / "primary", free_port())
    replica = Cluster(base / "replica", free_port())
    try:
        _run(BIN / "initdb", "-D", primary.directory, "-U", "postgres", "--auth=trust",
             "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")  # fmt: skip
        primary.configure(_settings(primary.port, base))
        primary.start()
        setup(primary.url)
        _run(BIN / "pg_basebackup", "-h", "127.0.0.1", "-p", primary.port, "-U", "postgres",
             "-D", replica.directory, "-R", "-X", "stream", "-c", "fast", "--no-sync")  # fmt: skip
        replica.configure(
            _settings(replica.port, base) + f"recovery_min_apply_delay = '{apply_delay}'\n"
        )
        replica.start()
        yield primary, replica
    finally:
        for cluster in (replica, primary):
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def owner_exists() -> bool:
    """Root needs the `postgres` user to own the clusters."""
    if os.geteuid() != 0:
        return True
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return False
    return True
