"""`python -m bench.retention`: expiring one day of mail, partition drop vs DELETE.

Each method gets a fresh database holding the same day of N messages (one
`raw_messages` and one `emails` row each, received 3 days ago) plus today's
partitions, and expires that day while a probe inserts one row every 2 ms:
  partition drop   what the service does (app.retention.maintain)
  DELETE           one plain DELETE per table on unpartitioned tables (indexed by received_at)
  batched DELETE   the same in 5,000-row transactions (our previous retention)
Reported: seconds, WAL written, dead tuples left, and the slowest probe insert.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from app import db, retention

from .__main__ import admin_url, sql

ROOT = Path(__file__).resolve().parent.parent
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
UNPARTITIONED_INDEXES = """
CREATE INDEX ON emails (received_at);
CREATE INDEX ON raw_messages (received_at);
"""


class Probe:
    """One single-row insert every 2 ms on its own connection; keeps the slowest."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.worst = 0.0
        self.count = 0
        self.running = True

    async def run(self) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            while self.running:
                began = time.perf_counter()
                await conn.execute(
                    "INSERT INTO emails (mailbox_owner, subject, body, from_addr) "
                    "VALUES ('probe@example.com', 'probe', '', '')"
                )
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
        if partitioned:
            await db.install_schema(conn)
        else:
            await conn.execute((ROOT / "sql" / "schema.sql").read_text())
            await conn.execute(UNPARTITIONED_INDEXES)
    finally:
        await conn.close()
    if partitioned:
        pool = await db.create_pool(url)
        try:
            await retention.maintain(pool, 24, expire=False)
            for table in retention.TABLES:
                await db.create_partition(
                    pool, table, retention.partition_name(table, day), day, day + DAY, None
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
    probe = Probe(url)
    probing = asyncio.create_task(probe.run())
    await asyncio.sleep(0.5)
    wal_before = (await sql(url, "SELECT pg_current_wal_lsn()"))[0][0]
    began = time.perf_counter()
    await expire()
    seconds = time.perf_counter() - began
    wal_query = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)"
    wal = (await sql(url, wal_query, wal_before))[0][0]
    await asyncio.sleep(0.3)
    probe.running = False
    await probing
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
    }


async def run(rows: int) -> list[dict[str, object]]:
    now = datetime.datetime.now(UTC)
    day = retention.floor_to(now, DAY) - 3 * DAY
    cutoff = day + DAY
    results = []

    url = await prepared(True, rows, day)
    pool = await db.create_pool(url)
    try:
        # RETENTION_HOURS chosen so that the cutoff is the end of that day.
        hours = (now - cutoff) / datetime.timedelta(hours=1)
        results.append(
            await measure(
                "partition drop", url, lambda: retention.maintain(pool, hours, now=now), rows
            )
        )
    finally:
        await pool.close()
    await drop(url)

    async def plain_delete(url: str) -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("DELETE FROM emails WHERE received_at < $1", cutoff)
            await conn.execute("DELETE FROM raw_messages WHERE received_at < $1", cutoff)
        finally:
            await conn.close()

    async def batched_delete(url: str) -> None:
        conn = await asyncpg.connect(url)
        try:
            for table in retention.TABLES:
                while True:
                    status = await conn.execute(
                        f"DELETE FROM {table} WHERE ctid IN (SELECT ctid FROM {table} "
                        "WHERE received_at < $1 LIMIT 5000 FOR UPDATE SKIP LOCKED)",
                        cutoff,
                    )
                    if status == "DELETE 0":
                        break
        finally:
            await conn.close()

    for label, method in (("DELETE", plain_delete), ("batched DELETE", batched_delete)):
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
        "probe inserts | slowest insert ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        ratio = float(r["seconds"]) / float(base["seconds"])  # type: ignore[arg-type]
        print(
            f"| {r['method']} | {r['rows']} | {r['seconds']:.2f} | {ratio:.3f} | "
            f"{r['wal_mib']:.1f} | {r['dead_tuples']} | {r['probe_inserts']} | "
            f"{r['slowest_insert_ms']:.1f} |"
        )


if __name__ == "__main__":
    main()
