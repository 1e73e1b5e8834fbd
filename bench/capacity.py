"""`python -m bench.capacity`: the figures of the capacity model (docs/capacity.md).

Scenarios (`--only`), each repeated `--repeats` times; medians reported:
  receiver   one receiver's ceiling: stored msg/s and CPU per message, 1 KB
             and 64 KB mail, WORKERS=1 and 2, against the aiosmtpd null sink
             of the same round (ratio = ours / sink); the peak number of
             PostgreSQL connections the service held meanwhile
  database   PostgreSQL's insert ceiling: the writer's statement
             (db_batch.insert_batch, batches of 50, 4 KB mail) from 4 connections
             at once (four receivers' writers) into the partitioned tables
             (partitions made by retention.maintain) with PREFILL rows already
             there; alone, then with the API (a real `python -m app api`)
             reading beside it at READ_RATE requests/s: list and read p50/p99
             and the API's peak connections

Everything shares this 2-core machine with the load generator and, often,
other test suites: the load average is printed with each run, and every
figure is a lower bound for a host of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import time
import uuid

import asyncpg
import uvloop

from app.model import Envelope, Prepared

from . import procstat
from .api import make_account, reader_loop, start_api
from .client import Pacer, percentile, stuffed, typical
from .report import cell, markdown_table
from .scenarios import throughput
from .targets import Target, drop_database, fresh_database, start_service, start_sink

SIZES = {"1KB": (1024, 4000), "64KB": (64 * 1024, 1000)}  # size, messages a round
SMOKE_SIZES = {"1KB": (1024, 100)}
SESSIONS = 50
WRITERS = 4
BATCH = 50
PREFILL = 200_000
READ_RATE = 100.0


@dataclasses.dataclass
class Row:
    run: str
    rounds: int
    rate: float = float("nan")  # stored msg/s
    ratio: float = float("nan")  # ours / null sink, same round
    cpu_ms: float = float("nan")  # ours (receiver) per message
    pg_cpu_ms: float = float("nan")
    connections: float = float("nan")
    list50: float = float("nan")
    list99: float = float("nan")
    read50: float = float("nan")
    read99: float = float("nan")
    wal_kb: float = float("nan")  # WAL written per message (the whole cluster's: an upper bound)
    table_kb: float = float("nan")  # tables, TOAST and indexes grown per message
    load: str = ""


def median(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


async def peak_connections(url: str, stop: asyncio.Event, seen: list[int]) -> None:
    """Sample the connections to this database until `stop` (the sampler's own excluded)."""
    conn = await asyncpg.connect(url)
    try:
        while not stop.is_set():
            count = await conn.fetchval(
                "SELECT count(*) - 1 FROM pg_stat_activity WHERE datname = current_database()"
            )
            seen.append(int(count))
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


def load_average() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


async def receiver_round(label: str, size: int, count: int, workers: int) -> dict[str, float]:
    tag = uuid.uuid4().hex[:6]
    bodies = [(f"{tag}-{n}", stuffed(typical(f"{tag}-{n}", size))) for n in range(count)]
    sink = await start_sink(workers)
    try:
        base = await throughput(sink, bodies, SESSIONS, label)
    finally:
        await sink.stop()
    service: Target = await start_service(None, workers)
    stop, seen = asyncio.Event(), [0]
    sampler = asyncio.create_task(peak_connections(service.database_url or "", stop, seen))
    try:
        ours = await throughput(service, bodies, SESSIONS, label)
    finally:
        stop.set()
        await sampler
        await service.stop()
    return {
        "rate": ours.stored_rate,
        "ratio": ours.stored_rate / base.accepted_rate,
        "cpu": ours.cpu_ms,
        "pg": ours.pg_cpu_ms,
        "connections": max(seen),
    }


async def receiver(repeats: int, sizes: dict[str, tuple[int, int]]) -> list[Row]:
    rows = []
    for label, (size, count) in sizes.items():
        for workers in (1, 2):
            load = load_average()
            rounds = [await receiver_round(label, size, count, workers) for _ in range(repeats)]
            row = Row(f"receiver {label} x{workers} (durable)", repeats, load=load)
            row.rate = median([r["rate"] for r in rounds])
            row.ratio = median([r["ratio"] for r in rounds])
            row.cpu_ms = median([r["cpu"] for r in rounds])
            row.pg_cpu_ms = median([r["pg"] for r in rounds])
            row.connections = max(r["connections"] for r in rounds)
            rows.append(row)
            print(table([row]).splitlines()[-1], flush=True)
    return rows


def prepared_batch(count: int, owners: int) -> list[Prepared]:
    from app.parse import parse

    made = []
    for n in range(count):
        raw = typical(f"db-{n}")
        rcpt = f"user{n % owners}@example.com"
        envelope = Envelope.new("bench@sender.test", (rcpt,), raw, "127.0.0.1", "b")
        made.append(Prepared(envelope, parse(raw), None))
    return made


async def insert_all(pool: asyncpg.Pool, prepared: list[Prepared]) -> float:
    """Insert `prepared` from WRITERS connections at once; seconds taken."""
    from app import db_batch

    batches = [prepared[n : n + BATCH] for n in range(0, len(prepared), BATCH)]

    async def writer(share: list[list[Prepared]]) -> None:
        for batch in share:
            await db_batch.insert_batch(pool, batch)

    started = time.perf_counter()
    await asyncio.gather(*(writer(batches[w::WRITERS]) for w in range(WRITERS)))
    return time.perf_counter() - started


async def wal_and_size(url: str) -> tuple[int, int]:
    """The cluster's WAL position and the mail tables' bytes, now."""
    from .scaling import STORAGE_SIZES

    conn = await asyncpg.connect(url)
    try:
        wal = await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")
        sizes = await conn.fetch(STORAGE_SIZES)
        return int(wal), sum(int(size) for _, size in sizes)
    finally:
        await conn.close()


async def database_round(count: int, with_reads: bool, prefill: int) -> dict[str, float]:
    from app import db, db_batch, retention

    from .scaling import _prefill

    url = await fresh_database()
    api = None
    try:
        pool = await db.create_pool(url, WRITERS)
        await retention.maintain(pool, 24, None, expire_mail=False)
        await _prefill(url, prefill)
        prepared = prepared_batch(count, 1000)
        await db_batch.insert_batch(pool, prepared[:BATCH])  # the reader's mailbox has mail
        result: dict[str, float] = {}
        if with_reads:
            api = await start_api("starlette", url)
            _, token = await make_account(url, "user0@example.com")
        stop, seen = asyncio.Event(), [0]
        sampler = asyncio.create_task(peak_connections(url, stop, seen))
        wal_before, size_before = await wal_and_size(url)
        pg_before = procstat.total_cpu(procstat.postgres_pids())
        list_ms: list[float] = []
        read_ms: list[float] = []
        readers = []
        if api is not None:
            until, pacer = time.perf_counter() + 3600, Pacer(READ_RATE)
            readers = [
                asyncio.create_task(reader_loop(api, token, until, list_ms, read_ms, pacer))
                for _ in range(4)
            ]
        seconds = await insert_all(pool, prepared[BATCH:])
        for task in readers:
            task.cancel()
        ended = await asyncio.gather(*readers, return_exceptions=True)
        pg = procstat.cpu_delta(pg_before, procstat.postgres_pids())
        wal_after, size_after = await wal_and_size(url)
        stop.set()
        await sampler
        await pool.close()
        failed = [r for r in ended if isinstance(r, Exception)]
        if failed:  # a reader's failure (not its cancellation) fails the run
            raise failed[0]
        inserted = count - BATCH
        result = {"rate": inserted / seconds, "pg": pg * 1000 / inserted}
        result["wal"] = (wal_after - wal_before) / 1024 / inserted
        result["table"] = (size_after - size_before) / 1024 / inserted
        result["connections"] = max(seen) - WRITERS  # the API's (the writers' excluded)
        result["list50"], result["list99"] = percentile(list_ms, 0.5), percentile(list_ms, 0.99)
        result["read50"], result["read99"] = percentile(read_ms, 0.5), percentile(read_ms, 0.99)
        return result
    finally:
        if api is not None:
            await api.stop()
        await drop_database(url)


async def database(repeats: int, count: int, prefill: int) -> list[Row]:
    rows = []
    for with_reads in (False, True):
        load = load_average()
        rounds = [await database_round(count, with_reads, prefill) for _ in range(repeats)]
        beside = f", API reading at {READ_RATE:g}/s" if with_reads else ""
        row = Row(f"PostgreSQL insert, {WRITERS} writers, {prefill:,} rows{beside}", repeats)
        row.load = load
        row.rate = median([r["rate"] for r in rounds])
        row.pg_cpu_ms = median([r["pg"] for r in rounds])
        row.wal_kb = median([r["wal"] for r in rounds])
        row.table_kb = median([r["table"] for r in rounds])
        if with_reads:
            row.connections = max(r["connections"] for r in rounds)
            for key in ("list50", "list99", "read50", "read99"):
                setattr(row, key, median([r[key] for r in rounds]))
        rows.append(row)
        print(table([row]).splitlines()[-1], flush=True)
    return rows


COLUMNS = (
    "run", "rounds", "load before (1/5/15 min)", "stored msg/s (median)", "ours / null sink",
    "CPU ms/msg ours", "CPU ms/msg PostgreSQL", "peak connections", "list p50/p99 ms",
    "read p50/p99 ms", "WAL KB/msg", "tables KB/msg",
)  # fmt: skip


def table(rows: list[Row]) -> str:
    def pair(p50: float, p99: float) -> str:
        return f"{cell(p50)} / {cell(p99)}" if p50 == p50 else ""

    return markdown_table(COLUMNS, (
        (r.run, r.rounds, r.load, cell(r.rate, 0), cell(r.ratio), cell(r.cpu_ms),
         cell(r.pg_cpu_ms), cell(r.connections, 0), pair(r.list50, r.list99),
         pair(r.read50, r.read99), cell(r.wal_kb, 1), cell(r.table_kb, 1))
        for r in rows
    ))  # fmt: skip


async def run(args: argparse.Namespace) -> list[Row]:
    chosen = set(args.only.split(",")) if args.only else {"receiver", "database"}
    rows: list[Row] = []
    if "receiver" in chosen:
        rows += await receiver(args.repeats, SMOKE_SIZES if args.smoke else SIZES)
    if "database" in chosen:
        rows += await database(args.repeats, args.inserts, args.prefill)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI, seconds")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--inserts", type=int, default=20_000, help="messages a database round")
    parser.add_argument("--prefill", type=int, default=PREFILL, help="rows already stored")
    parser.add_argument("--only", help="receiver,database")
    args = parser.parse_args()
    if args.smoke:
        args.repeats, args.inserts, args.prefill = 1, 500, 1000
    print(f"cores: {os.cpu_count()}, load average before: {load_average()}", flush=True)
    rows = uvloop.run(run(args))
    print(table(rows))


if __name__ == "__main__":
    main()
