"""What a bench run measures against: the null sink and our service, each
started as its own process, the service on a fresh database, both resolving
through the bench's local DNS server (SPF, DKIM and DMARC for `sender.test`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import dkim

from tests.dnsserver import DnsServer, dkim_key

from . import procstat
from .client import Sent, session, stuffed, typical

ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def bench_dns() -> tuple[DnsServer, bytes]:
    """The services' DNS server (what a sender with SPF, DKIM and DMARC
    publishes; all else NXDOMAIN) and the sender's DKIM private key."""
    private, public = dkim_key()
    server = DnsServer(
        {
            ("sender.test", "TXT"): ["v=spf1 ip4:127.0.0.1 -all"],
            ("_dmarc.sender.test", "TXT"): ["v=DMARC1; p=none"],
            ("bench._domainkey.sender.test", "TXT"): [f"v=DKIM1; k=rsa; p={public}"],
        }
    )
    return server, private


def signed_typical() -> bytes:
    """One DKIM-signed typical message (signed once: signing is not what we measure)."""
    raw = typical("signed")
    key = bench_dns()[1]
    headers = [b"from", b"to", b"subject", b"message-id"]
    return stuffed(dkim.sign(raw, b"bench", b"sender.test", key, include_headers=headers) + raw)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def admin_url() -> str:
    for name in ("BENCH_DATABASE_URL", "TEST_DATABASE_URL", "DATABASE_URL"):
        if os.environ.get(name):
            return os.environ[name]
    return "postgresql://postgres@127.0.0.1:5432/postgres"


async def sql(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


@dataclasses.dataclass
class Target:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    database_url: str | None = None

    def pids(self) -> list[int]:
        return procstat.family(self.process.pid)

    async def stored(self) -> int:
        if self.database_url is None:
            return -1
        return (await sql(self.database_url, "SELECT count(*) FROM emails"))[0][0]

    async def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(self.process.wait, 60)
        if self.database_url is not None:
            await drop_database(self.database_url)


async def wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"target exited with {process.returncode}")
        results: list[Sent] = []
        try:
            if await session(port, [("ready", stuffed(b"Subject: ready\r\n\r\nx"))], results) == 0:
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("target not ready in 30 s")


async def start_sink(workers: int) -> Target:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.nullsink", str(port), str(workers)], cwd=ROOT
    )
    await wait_ready(port, process)
    return Target(f"null sink x{workers}", port, process)


# Limits the load scenarios would hit from one client address: raised for
# them; the headline (mta) runs with every default.
LOAD_LIMITS = {
    "MAX_CONNECTIONS": "20000",
    "MAX_CONNECTIONS_PER_IP": "20000",
    "USE_BANS": "false",
}


async def fresh_database() -> str:
    """A new database with the schema installed; its URL."""
    name = "bench_" + uuid.uuid4().hex[:10]
    await sql(admin_url(), f"CREATE DATABASE {name}")
    url = admin_url().rsplit("/", 1)[0] + "/" + name
    conn = await asyncpg.connect(url)
    try:
        await conn.execute((ROOT / "sql" / "schema.sql").read_text())
    finally:
        await conn.close()
    return url


async def drop_database(url: str) -> None:
    await sql(admin_url(), f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


async def start_service(
    ack_mode: str | None, workers: int, module: str = "app", defaults: bool = False, **settings: str
) -> Target:
    url = await fresh_database()
    await sql(url, "INSERT INTO domains (domain) VALUES ('example.com')")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)},
        "DATABASE_URL": url,
        "SMTP_RECEIVE_PORT": str(port),
        "SMTP_BIND": "127.0.0.1",
        "SMTP_HOSTNAME": "mx.bench",
        **({"ACK_MODE": ack_mode} if ack_mode else {}),
        "WORKERS": str(workers),
        "LOG_LEVEL": "warning",
        "SPOOL_DIR": tempfile.mkdtemp(prefix="bench-spool-"),
        **({} if defaults else LOAD_LIMITS),
        # One client flooding one mailbox is what a bench does (and what
        # RATE_PER_NETWORK and RATE_PER_MAILBOX refuse): the defence rows
        # (bench/defence.py) turn the limits on with their own values.
        "RATE_LIMITS": "off",
        "DNS_RESOLVER": bench_dns()[0].address,
        **{k.upper(): v for k, v in settings.items()},
    }
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--env-file", "/dev/null", "serve"], cwd=ROOT, env=env
    )
    await wait_ready(port, process)
    mode = ack_mode or "default"
    label = f"ours {mode} x{workers}" + (" metrics off" if module == "bench.nometrics" else "")
    return Target(label, port, process, url)
