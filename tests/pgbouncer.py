"""A private PgBouncer in transaction mode, in front of the test PostgreSQL.

Debian's pgbouncer (1.18, installed by scripts/test), on a free port, with
its own pgbouncer.ini under the test's directory: every database of the
server behind it, as the test URL's user, no client authentication
(auth_type any), and fewer server connections than clients (pool size 3),
so clients really take turns on server sessions as they do behind
Supabase's pooler. It refuses to run as root: then it is started with
`-u postgres` (or another user that exists; it reads its file first).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from .helpers import ADMIN_URL, db_address, free_port

POOL_SIZE = 3  # server connections per database and user


class PgBouncer:
    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        host, port = db_address(ADMIN_URL)
        admin = urlsplit(ADMIN_URL)
        self.user = admin.username or "postgres"
        password = f" password={admin.password}" if admin.password else ""
        self.ini = directory / "pgbouncer.ini"
        self.ini.write_text(
            "[databases]\n"
            f"* = host={host} port={port} user={self.user}{password}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = any\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {POOL_SIZE}\n"
            "max_client_conn = 500\n"
            "ignore_startup_parameters = extra_float_digits\n"
        )
        self.ini.chmod(0o644)
        self.log = directory / "pgbouncer.log"
        user = ["-u", self.system_user()] if os.geteuid() == 0 else []
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [self.program(), *user, str(self.ini)], stdout=out, stderr=subprocess.STDOUT
            )
        self._wait_listening()

    @staticmethod
    def program() -> str:
        found = shutil.which("pgbouncer") or (
            "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
        )
        if found is None:
            pytest.fail("pgbouncer is not installed (scripts/test installs it)")
        return found

    @staticmethod
    def system_user() -> str:
        """Who PgBouncer runs as when we are root: a user that exists here."""
        for name in ("postgres", "pgserver", "nobody"):
            try:
                pwd.getpwnam(name)
                return name
            except KeyError:
                continue
        pytest.fail("no user to run pgbouncer as (it refuses root)")

    def _wait_listening(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"pgbouncer exited:\n{self.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"pgbouncer not listening within {timeout}s")

    def url(self, database_url: str) -> str:
        """`database_url` (a database of the test server) reached through this PgBouncer."""
        parts = urlsplit(database_url)
        return urlunsplit(parts._replace(netloc=f"{self.user}@127.0.0.1:{self.port}"))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def running(tmp_path: Path) -> Iterator[PgBouncer]:
    """A PgBouncer for one test, stopped however the test ends."""
    directory = tmp_path / "pgbouncer"
    directory.mkdir()
    directory.chmod(0o755)  # run as postgres, it reads nothing here after start
    bouncer = PgBouncer(directory)
    try:
        yield bouncer
    finally:
        bouncer.stop()
