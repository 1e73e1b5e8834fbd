"""`python -m bench`: our service against an aiosmtpd null sink, same run, one table.

Scenarios (each target started fresh, each service on a fresh database):
  throughput   saturating load: 50 sessions of 4 KB messages (and a corpus mix)
  paced        200 msg/s: DATA-end-to-250 latency and 250-to-committed-row lag
  memory       1,000 idle connections plus a steady load; 10,000 connections
  large        10 x 20 MB messages while 20 small sessions run
  connections  10,000 concurrent connections
  workers      WORKERS=2 against a two-process null sink
  metrics      the same load with the metric updates on and off (A/B/A/B)
  auth         DKIM-signed mail with AUTH_CHECKS=record and off (A/B/A/B, instant and durable)
Every service resolves through a local DNS server (bench/README.md) that
serves SPF, DKIM and DMARC records for the bench's sender domain.
`--smoke` runs tiny versions of the first two, for CI (no thresholds).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import os
import random
import resource
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
import uvloop

from tests.dnsserver import DnsServer, dkim_key

from . import mta, procstat, scaling
from .client import Pacer, Sent, idle_connections, percentile, session, stuffed, typical
from .report import cell, markdown_table

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
RESULTS = ROOT / "bench" / "results"


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


@dataclasses.dataclass
class Row:
    run: str
    accepted_rate: float = float("nan")
    stored_rate: float = float("nan")
    ratio: float = float("nan")
    cpu_ms: float = float("nan")
    pg_cpu_ms: float = float("nan")
    p50: float = float("nan")
    p99: float = float("nan")
    p999: float = float("nan")
    lag50: float = float("nan")
    lag99: float = float("nan")
    cpu_ratio: float = float("nan")
    rss_mib: str = ""
    errors: int = 0


def rss_text(target: Target, field: str = "VmHWM") -> str:
    return "/".join(str(procstat.memory_kib(pid, field) // 1024) for pid in target.pids())


def latency_row(
    run: str, results: list[Sent], target: Target, errors: int, rss_field: str = "VmHWM"
) -> Row:
    """A table row with the 250 latency percentiles of `results`, in ms."""
    latencies = [r.latency * 1000 for r in results]
    return Row(
        run=run,
        p50=percentile(latencies, 0.5),
        p99=percentile(latencies, 0.99),
        p999=percentile(latencies, 0.999),
        rss_mib=rss_text(target, rss_field),
        errors=errors,
    )


async def load(
    target: Target, bodies: list[tuple[str, bytes]], sessions: int, rate: float | None = None
) -> tuple[list[Sent], int, float]:
    """Send `bodies` over `sessions` connections; (results, errors, seconds)."""
    results: list[Sent] = []
    pacer = Pacer(rate) if rate else None
    shares = [bodies[n::sessions] for n in range(sessions)]
    started = time.perf_counter()
    errors = await asyncio.gather(*(session(target.port, s, results, pacer) for s in shares))
    return results, sum(errors), time.perf_counter() - started


async def wait_stored(target: Target, expected: int, started: float) -> float:
    """Seconds from `started` (perf_counter) until `expected` rows are committed."""
    deadline = time.perf_counter() + 120
    while await target.stored() < expected and time.perf_counter() < deadline:
        await asyncio.sleep(0.02)
    return time.perf_counter() - started


def corpus_bodies(count: int) -> list[tuple[str, bytes]]:
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix != ".md")
    files = [f for f in files if f.name != ".gitattributes" and f.stat().st_size < 200_000]
    rng = random.Random(5)
    picked = [rng.choice(files) for _ in range(count)]
    # A file picked twice is a new message, not a resend (app/db_dedup.py): other bytes.
    return [
        (f"c{n}", stuffed(_crlf(b"X-Bench-Copy: %d\n" % n + p.read_bytes())))
        for n, p in enumerate(picked)
    ]


def _crlf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


async def throughput(
    target: Target, bodies: list[tuple[str, bytes]], sessions: int, label: str = ""
) -> Row:
    pg_before = procstat.total_cpu(procstat.postgres_pids())
    ours_before = procstat.total_cpu(target.pids())
    stored_before = await target.stored()
    started = time.perf_counter()
    results, errors, seconds = await load(target, bodies, sessions)
    accepted = sum(r.code == 250 for r in results)
    if target.database_url is not None:
        stored_seconds = await wait_stored(target, stored_before + accepted, started)
    else:
        stored_seconds = seconds
    cpu = procstat.cpu_delta(ours_before, target.pids())
    pg_cpu = procstat.cpu_delta(pg_before, procstat.postgres_pids())
    row = latency_row(f"{target.name} {label}".strip(), results, target, errors)
    row.accepted_rate = accepted / seconds
    row.stored_rate = accepted / stored_seconds
    row.cpu_ms = cpu * 1000 / max(accepted, 1)
    if target.database_url:
        row.pg_cpu_ms = pg_cpu * 1000 / max(accepted, 1)
    return row


async def paced(target: Target, rate: float, seconds: float, sessions: int = 20) -> Row:
    count = int(rate * seconds)
    tag = uuid.uuid4().hex[:6]
    bodies = [(f"p{tag}-{n}", stuffed(typical(f"p{tag}-{n}"))) for n in range(count)]
    results, errors, _ = await load(target, bodies, sessions, rate)
    row = latency_row(f"{target.name} paced {rate:.0f}/s", results, target, errors)
    if target.database_url is not None:
        acked = {r.marker: r.acked_at for r in results if r.code == 250}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rows = await sql(
                target.database_url,
                "SELECT subject, extract(epoch FROM created_at) FROM emails WHERE subject LIKE $1",
                f"p{tag}-%",
            )
            if len(rows) >= len(acked):
                break
            await asyncio.sleep(0.1)
        # created_at is the batch transaction's start: the commit follows within
        # the batch time, so this lag is slightly early.
        lags = [(float(r[1]) - acked[r[0]]) * 1000 for r in rows if r[0] in acked]
        row.lag50, row.lag99 = percentile(lags, 0.5), percentile(lags, 0.99)
    return row


async def memory(target: Target, idle: int, steady_rate: float = 100) -> Row:
    writers, failures = await idle_connections(target.port, idle)
    tag = uuid.uuid4().hex[:6]
    bodies = [(f"m{tag}-{n}", stuffed(typical(f"m{tag}-{n}"))) for n in range(int(steady_rate * 3))]
    results, errors, _ = await load(target, bodies, 10, steady_rate)
    row = latency_row(f"{target.name} +{idle} idle", results, target, errors + failures, "VmRSS")
    for writer in writers:
        writer.close()
    await asyncio.sleep(0.5)
    return row


async def large(target: Target) -> Row:
    big = stuffed(b"Subject: big\r\n\r\n" + (b"B" * 76 + b"\r\n") * (20 * 1024 * 1024 // 78))
    tag = uuid.uuid4().hex[:6]
    small = [(f"s{tag}-{n}", stuffed(typical(f"s{tag}-{n}"))) for n in range(400)]
    small_results: list[Sent] = []
    pacer = Pacer(100)

    async def small_sessions() -> None:
        await asyncio.gather(
            *(session(target.port, small[n::20], small_results, pacer) for n in range(20))
        )

    big_results: list[Sent] = []
    started = time.perf_counter()
    await asyncio.gather(
        small_sessions(),
        *(session(target.port, [(f"big{n}", big)], big_results) for n in range(10)),
    )
    errors = sum(r.code != 250 for r in small_results + big_results)
    row = latency_row(f"{target.name} small during 10x20MB", small_results, target, errors)
    row.accepted_rate = len(small_results) / (time.perf_counter() - started)
    return row


async def many_connections(target: Target, count: int) -> Row:
    writers, failures = await idle_connections(target.port, count)
    row = Row(
        run=f"{target.name} {len(writers)} of {count} connections open",
        rss_mib=rss_text(target, "VmRSS"),
        errors=failures,
    )
    for writer in writers:
        writer.close()
    await asyncio.sleep(1)
    return row


COLUMNS = (
    "run", "msg/s accepted", "msg/s stored", "stored / null sink", "CPU ms/msg ours",
    "CPU / null sink", "CPU ms/msg PostgreSQL", "250 p50 ms", "p99 ms", "p99.9 ms",
    "lag p50 ms", "lag p99 ms", "RSS MiB", "errors",
)  # fmt: skip


def table(rows: list[Row]) -> str:
    return markdown_table(COLUMNS, (
        (r.run, cell(r.accepted_rate, 0), cell(r.stored_rate, 0), cell(r.ratio),
         cell(r.cpu_ms), cell(r.cpu_ratio), cell(r.pg_cpu_ms), cell(r.p50), cell(r.p99),
         cell(r.p999), cell(r.lag50, 1), cell(r.lag99, 1), r.rss_mib, r.errors)
        for r in rows
    ))  # fmt: skip


SCENARIOS = (
    "mta",
    "throughput",
    "paced",
    "memory",
    "large",
    "connections",
    "workers",
    "metrics",
    "auth",
    "growth",
    "sizes",
    "recipients",
    "memory25",
    "storage",
)


async def fresh(kind: str, scenario, *args: object) -> Row:  # type: ignore[no-untyped-def]
    """Run `scenario` on a target started for it alone (memory is not shared)."""
    target = await (start_sink(1) if kind == "sink" else start_service("instant", 1))
    try:
        return await scenario(target, *args)
    finally:
        await target.stop()


async def run(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    chosen = set(args.only.split(",")) if args.only else set(SCENARIOS)
    if args.smoke:
        chosen &= {"mta", "throughput", "paced"}
    count, sessions = args.messages, args.sessions
    typical_bodies = [(f"t{n}", stuffed(typical(f"t{n}"))) for n in range(count)]
    mix = corpus_bodies(count // 2) if CORPUS.is_dir() and not args.smoke else []
    baselines: dict[tuple[int, str], float] = {}

    async def measure(target: Target, workers: int) -> None:
        for label, bodies in (("4KB", typical_bodies), ("corpus mix", mix)):
            if not bodies or (label == "corpus mix" and "durable" in target.name):
                continue
            row = await throughput(target, bodies, sessions, label)
            if target.database_url is None:
                baselines[workers, label] = row.accepted_rate
            elif (workers, label) in baselines:
                row.ratio = row.stored_rate / baselines[workers, label]
            rows.append(row)

    if "mta" in chosen and mta.available():
        sink = await start_sink(1)
        baseline = await mta.run(sink, "smtp-source 4KB 1 msg/conn", args.mta_messages)
        await sink.stop()
        rows.append(baseline)
        service = await start_service(None, 1, defaults=True)
        row = await mta.run(service, "smtp-source 4KB 1 msg/conn", args.mta_messages)
        await service.stop()
        row.ratio = row.stored_rate / baseline.stored_rate
        row.cpu_ratio = row.cpu_ms / baseline.cpu_ms
        rows.append(row)
    if chosen & {"throughput", "paced"}:
        sink = await start_sink(1)
        if "throughput" in chosen:
            await measure(sink, 1)
        if "paced" in chosen:
            rows.append(await paced(sink, args.rate, args.seconds))
        await sink.stop()
        for ack_mode in ("instant", "durable"):
            service = await start_service(ack_mode, 1)
            if "throughput" in chosen:
                await measure(service, 1)
            if "paced" in chosen:
                rows.append(await paced(service, args.rate, args.seconds))
            await service.stop()
    if "memory" in chosen:
        rows += [await fresh(kind, memory, 1000) for kind in ("sink", "service")]
    if "large" in chosen:
        rows += [await fresh(kind, large) for kind in ("sink", "service")]
    if "connections" in chosen:
        rows += [await fresh(kind, many_connections, 10_000) for kind in ("sink", "service")]
    if "metrics" in chosen:
        # A/B/A/B, each on a fresh service: the instrumentation's cost.
        on_rows: list[Row] = []
        for _ in range(2):
            for module in ("app", "bench.nometrics"):
                service = await start_service("instant", 1, module=module)
                row = await throughput(service, typical_bodies, sessions, "4KB")
                (on_rows if module == "app" else rows).append(row)
                await service.stop()
        for on, off in zip(on_rows, rows[-2:], strict=True):
            on.ratio = on.stored_rate / off.stored_rate
            on.run += " metrics on (ratio: on / off)"
        rows += on_rows
    if "auth" in chosen:
        one = signed_typical()
        bodies = [(f"auth{n}", one) for n in range(count)]
        for ack_mode in ("instant", "durable"):
            pair: dict[str, Row] = {}
            for _ in range(2 if ack_mode == "instant" else 1):
                for checks in ("off", "record"):
                    service = await start_service(ack_mode, 1, auth_checks=checks)
                    row = await throughput(service, bodies, sessions, f"signed 4KB auth {checks}")
                    if checks == "off":
                        pair["off"] = row
                    else:
                        row.ratio = row.stored_rate / pair["off"].stored_rate
                        row.run += " (ratio: record / off)"
                    rows.append(row)
                    await service.stop()
    if "growth" in chosen:
        rows += [await scaling.growth(count) for count in scaling.GROWTH_SIZES]
    if "sizes" in chosen:
        for size, count in ((1024, 1000), (64 * 1024, 200), (1 << 20, 20), (5 << 20, 6)):
            rows.append(await scaling.sizes(lambda: start_service(None, 1), size, count))
        rows.append(await scaling.sizes(lambda: start_service(None, 1), (25 << 20) - 4096, 3))
    if "recipients" in chosen and mta.available():
        for rcpts in (1, 10, 100):
            service = await start_service(None, 1, defaults=True)
            rows.append(await scaling.recipients(service, 1000 // rcpts * 2, rcpts))
            await service.stop()
    if "memory25" in chosen:
        rows.append(await fresh("sink", scaling.memory25))
        rows.append(await fresh("service", scaling.memory25))
        rows.append(await fresh("service", scaling.memory25, 50, True))
    if "storage" in chosen and CORPUS.is_dir():
        for below in (None, 200_000):  # all; the throughput rows' corpus mix
            service = await start_service(None, 1, defaults=True)
            rows.append(await scaling.storage(service, below))
            await service.stop()
    if "workers" in chosen:
        sink = await start_sink(2)
        await measure(sink, 2)
        await sink.stop()
        service = await start_service("instant", 2)
        await measure(service, 2)
        await service.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI, seconds")
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--mta-messages", type=int, default=5_000, help="smtp-source headline")
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--rate", type=float, default=200, help="paced run, msg/s")
    parser.add_argument("--seconds", type=float, default=10, help="paced run length")
    parser.add_argument("--only", help="comma-separated scenarios: " + ",".join(SCENARIOS))
    args = parser.parse_args()
    if args.smoke:
        args.messages, args.sessions, args.rate, args.seconds = 300, 10, 100, 1
        args.mta_messages = 200
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    load_avg = os.getloadavg()
    rows = uvloop.run(run(args))
    text = table(rows)
    header = (
        f"cores: {os.cpu_count()}, load before: {load_avg[0]:.2f}, "
        f"messages: {args.messages}, sessions: {args.sessions}, "
        f"paced: {args.rate:.0f}/s for {args.seconds:.0f}s"
    )
    print(header)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.md").write_text(header + "\n\n" + text + "\n")
    if any(r.errors for r in rows if "connections open" not in r.run):
        print("errors in the run: see the table", file=sys.stderr)


if __name__ == "__main__":
    main()
