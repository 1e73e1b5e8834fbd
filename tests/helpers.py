"""Test helpers: a fresh database per test, and the real service as a subprocess."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def url_for(database: str) -> str:
    parts = urlsplit(ADMIN_URL)
    return urlunsplit(parts._replace(path="/" + database))


def query(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(go())


def script(url: str, sql: str) -> None:
    """Run `sql`, several statements, as an operator would in psql (a simple
    query: no prepared statement)."""

    async def go() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(go())


def create_database() -> str:
    name = "t_" + uuid.uuid4().hex[:12]
    query(ADMIN_URL, f"CREATE DATABASE {name}")
    return name


def drop_database(name: str) -> None:
    # DROP DATABASE asks for a checkpoint, which fails while another test
    # (test_review_store_full) holds a tablespace full: wait until it is freed.
    eventually(lambda: _dropped(name), timeout=300, interval=0.5)


def _dropped(name: str) -> bool:
    try:
        query(ADMIN_URL, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    except asyncpg.PostgresError as error:
        if "checkpoint" not in str(error):
            raise
        return False
    return True


def install_schema(url: str, domains: tuple[str, ...] = ()) -> None:
    sql = (ROOT / "sql" / "schema.sql").read_text()

    async def go() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(sql)
            for domain in domains:
                await conn.execute(
                    "INSERT INTO domains (domain) VALUES ($1) ON CONFLICT DO NOTHING", domain
                )
        finally:
            await conn.close()

    asyncio.run(go())


# Only these pass from the developer's shell into the servers a test starts:
# an ACK_MODE or WORKERS exported there must not change what a test proves.
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH")


def clean_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in PASSED_THROUGH}


def app_command(
    *args: str, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """`python -m app ARGS` run to its end, from a clean environment plus `env`,
    with `stdin` as its standard input."""
    return subprocess.run(
        [sys.executable, "-m", "app", "--env-file", "/dev/null", *args],
        cwd=ROOT,
        env={**clean_environment(), **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def session_pids(session: int) -> list[int]:
    """The live processes of session `session` (one started with start_new_session);
    zombies, ended and waiting for their parent to reap them, are not counted."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[3]) == session and fields[0] != "Z":
                found.append(int(entry.name))
    return found


class AppProcess:
    """`python -m app <command>` in a session of its own, its output collected
    line by line."""

    command = "serve"

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.lines: list[str] = []
        self.process: subprocess.Popen[str] | None = None

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "app", "--env-file", "/dev/null", self.command]

    def spawn(self) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(),
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,  # its own session: kill() reaches its children too
        )

    def launch(self) -> None:
        self.process = self.spawn()
        self._collector = threading.Thread(target=self._collect, daemon=True)
        self._collector.start()

    def _collect(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def exited(self) -> bool:
        """True (after reading its last lines) if the process has ended."""
        if self.process is None or self.process.poll() is None:
            return False
        self._collector.join(5)
        return True

    def wait_for_log(self, pattern: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.log):
                return
            if self.exited():
                raise AssertionError(f"{self.command} exited early:\n{self.log}")
            time.sleep(0.05)
        raise AssertionError(f"no log line matching {pattern!r} within {timeout}s:\n{self.log}")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signum)
        code = self.process.wait(timeout)
        self.close()
        return code

    def kill(self) -> None:
        """SIGKILL to every process of its session (children run in groups of their own)."""
        assert self.process is not None
        for pid in session_pids(self.process.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()
        self.close()

    def close(self) -> None:
        """Read the last lines and close the pipe."""
        assert self.process is not None and self.process.stdout is not None
        self._collector.join(10)
        self.process.stdout.close()


class Server(AppProcess):
    """`python -m app serve` on a free port."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        super().__init__(
            {
                **clean_environment(),
                "SMTP_RECEIVE_PORT": str(self.port),
                "SMTP_BIND": "127.0.0.1",
                "SMTP_HOSTNAME": "mx.test",
                "LOG_LEVEL": "info",
                **env,
            }
        )

    def start(self, ready: str = r"\[smtp\] listening on", timeout: float = 60) -> Server:
        self.launch()
        self.wait_for_log(ready, timeout)
        return self


def normalised(raw: bytes) -> bytes:
    """The bytes an MTA sends for `raw`, as smtplib does: CRLF line ends, final CRLF."""
    data = re.sub(rb"\r\n|\n|\r", b"\r\n", raw)
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def queued_id(reply: bytes) -> str:
    match = re.search(rb"queued as ([0-9a-f-]{36})", reply)
    assert match, reply
    return match.group(1).decode()


def corpus_files() -> list[Path]:
    skip = {"README.md", ".gitattributes"}
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name not in skip)


def with_port(url: str, port: int) -> str:
    """`url` pointed at 127.0.0.1:`port` (a proxy in front of the database)."""
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{user}@127.0.0.1:{port}"))


def db_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 5432


def smtp_reply(port: int, sender: str, rcpt: str | None = None) -> tuple[int, bytes]:
    """The reply to MAIL FROM (or, if `rcpt`, to RCPT TO) in a fresh session."""
    import smtplib

    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("probe.test")
        reply = client.mail(sender)
        if rcpt is None or reply[0] != 250:
            return reply
        return client.rcpt(rcpt)


def eventually(check: Any, timeout: float = 30, interval: float = 0.05) -> Any:
    """Poll `check()` until it returns a truthy value; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            assert value, f"not true within {timeout}s"
            return value
        time.sleep(interval)


TRACE = re.compile(
    rb"Received: from \S+ \(\[[^\]]+\]\) by \S+ with ESMTPS? id [0-9a-f-]{36}; [^\r\n]+\r\n"
)


def as_sent(raw: bytes) -> bytes:
    """A stored raw message without the one trace line the service prepends."""
    match = TRACE.match(raw)
    assert match, raw[:200]
    return raw[match.end() :]
