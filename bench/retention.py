"""`python -m bench.retention`: expiring one day of mail, partition drop vs DELETE.

Each method gets a fresh database holding the same day of N messages (one
`raw_messages` and one `emails` row each, received 3 days ago) plus today's
partitions, and expires that day while one probe inserts a row and another
reads a mailbox, each every 2 ms:
  partition drop   what the service does (app.retention.maintain)
  DELETE           one plain DELETE per table on unpartitioned tables (indexed by received_at)
  batched DELETE   what the service does on an unpartitioned (Cybertemp) table:
                   5,000-row transactions (app.retention.expire)
Reported: seconds, WAL written, dead tuples left, the slowest probe insert and read.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg

from app import db, db_partitions, db_schema, retention, retention_partitions, retention_plan

from .targets import admin_url, sql

UTC = datetime.UTC
DAY = datetime.timedelta(days=1)

FILL_RAW = """
INSERT INTO raw_messages (id, raw, received_at)
SELECT gen_random_uuid(), convert_to(repeat('Subject: bench message body line ', 12), 'UTF8'),
       $1::timestamptz + (n * interval '86399 seconds') / $2
FROM generate_series(0, $2 - 1) AS n
"""
FILL_EMAILS = """
INSERT INTO emails (mailbox_owner, subject, body, from_addr, to_addrs, size, received_at, raw_id)
SELECT 'user' || (random() * 5000)::int || '@example.com', 'bench', repeat('body ', 40),
       'a@sender.test', ARRAY['x@example.com'], 400, received_at, id
FROM raw_messages
"""
# Plain tables, as a Cybertemp database has emails; init-db adds our columns
# and the received_at indexes the batched deletes use.
UNPARTITIONED = """
CREATE TABLE raw_messages (id uuid PRIMARY KEY, raw bytea NOT NULL,
                           received_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE emails (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), mailbox_owner text NOT NULL,
                     subject text NOT NULL, body text NOT NULL, from_addr text NOT NULL,
                     created_at timestamptz DEFAULT now());
"""


# The writer: a single-row insert (it locks emails and the partition it lands in).
INSERT = (
    "INSERT INTO emails (mailbox_owner, subject, body, from_addr) "
    "VALUES ('probe@example.com', 'probe', '', '')"
)
# The website: one mailbox, newest first (it locks every partition: not pruned by time).
READ = (
    "SELECT id, subject FROM emails WHERE mailbox_owner = 'reader@example.com' "
    "ORDER BY received_at DESC LIMIT 30"
)


class Probe:
    """`statement` every 2 ms on its own connection (INSERT or READ); keeps the slowest."""

    def __init__(self, url: str, statement: str = INSERT) -> None:
        self.url = url
        self.statement = statement
        self.worst = 0.0
        self.count = 0
        self.running = True
        self.pid = 0  # its backend's, once connected
        self.locked = 0.0  # seconds it was seen waiting for a lock (tests/probes.py)

    async def run(self) -> None:
        conn = await asyncpg.connect(self.url)
        self.pid = conn.get_server_pid()
        try:
            while self.running:
                began = time.perf_counter()
                await conn.execute(self.statement)
                self.worst = max(self.worst, time.perf_counter() - began)
                self.count += 1
                await asyncio.sleep(0.002)
        finally:
            await conn.close()


async def prepared(partitioned: bool, rows: int, day: datetime.datetime) -> str:
    name = "bench_ret_" + uuid.uuid4().hex[:8]
    await sql(admin_url(), f"CREATE DATABASE {name}")
    url = admin_url().rsplit("/", 1)[0] + "/" + name
    conn = await asyncpg.connect(url)
    try:
        if not partitioned:
            await conn.execute(UNPARTITIONED)
        await db_schema.install_schema(conn)
    finally:
        await conn.close()
    if partitioned:
        pool = await db.create_pool(url)
        try:
            await retention_partitions.make_ahead(pool, 24, datetime.datetime.now(UTC))
            for table in retention_plan.TABLES:
                await db_partitions.create_partition(
                    pool, table, retention_plan.partition_name(table, day), day, day + DAY, None
                )
        finally:
            await pool.close()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(FILL_RAW, day, rows)
        await conn.execute(FILL_EMAILS)
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return url


async def dead_tuples(url: str) -> int:
    await sql(url, "SELECT pg_stat_force_next_flush()")
    found = await sql(
        url,
        "SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables "
        "WHERE relname LIKE 'emails%' OR relname LIKE 'raw_messages%'",
    )
    return int(found[0][0])


async def measure(
    label: str, url: str, expire: Callable[[], Awaitable[object]], rows: int
) -> dict[str, object]:
    probe, reader = Probe(url), Probe(url, READ)
    probing = [asyncio.create_task(p.run()) for p in (probe, reader)]
    await asyncio.sleep(0.5)
    wal_before = (await sql(url, "SELECT pg_current_wal_lsn()"))[0][0]
    began = time.perf_counter()
    await expire()
    seconds = time.perf_counter() - began
    wal_query = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)"
    wal = (await sql(url, wal_query, wal_before))[0][0]
    await asyncio.sleep(0.3)
    probe.running = reader.running = False
    await asyncio.gather(*probing)
    remaining = (await sql(url, "SELECT count(*) FROM raw_messages"))[0][0]
    assert remaining == 0, f"{label}: {remaining} raw messages left"
    return {
        "method": label,
        "rows": rows,
        "seconds": seconds,
        "wal_mib": float(wal) / 2**20,
        "dead_tuples": await dead_tuples(url),
        "probe_inserts": probe.count,
        "slowest_insert_ms": probe.worst * 1000,
        "slowest_read_ms": reader.worst * 1000,
    }


async def run(rows: int) -> list[dict[str, object]]:
    now = datetime.datetime.now(UTC)
    day = retention_plan.floor_to(now, DAY) - 3 * DAY
    cutoff = day + DAY
    results = []

    async def expire(url: str) -> None:
        pool = await db.create_pool(url)
        try:
            await retention.expire(pool, cutoff, frozenset(), include_existing=False)
        finally:
            await pool.close()

    url = await prepared(True, rows, day)
    results.append(await measure("partition drop", url, lambda: expire(url), rows))
    await drop(url)

    async def plain_delete(url: str) -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("DELETE FROM emails WHERE received_at < $1", cutoff)
            await conn.execute("DELETE FROM raw_messages WHERE received_at < $1", cutoff)
        finally:
            await conn.close()

    for label, method in (("DELETE", plain_delete), ("batched DELETE", expire)):
        url = await prepared(False, rows, day)
        results.append(await measure(label, url, lambda m=method, u=url: m(u), rows))  # type: ignore[misc]
        await drop(url)
    return results


async def drop(url: str) -> None:
    await sql(admin_url(), f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.retention", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="messages in the day")
    args = parser.parse_args()
    results = asyncio.run(run(args.rows))
    base = next(r for r in results if r["method"] == "DELETE")
    print(
        "| method | messages | seconds | vs DELETE | WAL MiB | dead tuples | "
        "probe inserts | slowest insert ms | slowest read ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        ratio = float(r["seconds"]) / float(base["seconds"])  # type: ignore[arg-type]
        print(
            f"| {r['method']} | {r['rows']} | {r['seconds']:.2f} | {ratio:.3f} | "
            f"{r['wal_mib']:.1f} | {r['dead_tuples']} | {r['probe_inserts']} | "
            f"{r['slowest_insert_ms']:.1f} | {r['slowest_read_ms']:.1f} |"
        )


if __name__ == "__main__":
    main()
