"""The load scenarios of `python -m bench`, each one table row against one
target: saturating throughput, paced latency and commit lag, memory with idle
connections, small sessions beside large messages, many open connections.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid

from . import procstat
from .client import Pacer, Sent, idle_connections, percentile, session, stuffed, typical
from .rows import Row, latency_row, rss_text
from .targets import ROOT, Target, sql

CORPUS = ROOT.parent / "shared" / "corpus"


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
        (f"c{n}", stuffed(crlf(b"X-Bench-Copy: %d\n" % n + p.read_bytes())))
        for n, p in enumerate(picked)
    ]


def crlf(raw: bytes) -> bytes:
    """Every line end as CRLF, as SMTP carries it."""
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
