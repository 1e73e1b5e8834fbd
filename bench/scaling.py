"""How cost grows: with the rows already stored, with message size, with
recipients, and memory under many large messages at once.

  growth      insert cost per message (the writer's statement, batches of 50)
              with 0, 1 million and 10 million rows already in `emails`
  sizes       CPU per message from 1 KB to 25 MB
  recipients  CPU per message for 1, 10 and 100 recipients (smtp-source -r)
  memory25    peak RSS while 50 clients each send a 25 MiB message at once
  storage     bytes in PostgreSQL (tables, TOAST, indexes) per byte received,
              for every corpus message stored once
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from . import mta, procstat
from .client import Sent, session, stuffed, typical
from .rows import Row, rss_text
from .scenarios import CORPUS, crlf, load, wait_stored
from .targets import drop_database, fresh_database, sql

MIB = 1024 * 1024
GROWTH_SIZES = (0, 1_000_000, 10_000_000)
GROWTH_MESSAGES = 5_000
OWNERS = 100_000  # distinct mailboxes among the rows already stored


async def _prefill(url: str, rows: int) -> None:
    """`rows` emails rows (and their raw messages) spread over the last day."""
    conn = await asyncpg.connect(url, command_timeout=None)
    try:
        step = 500_000
        for start in range(0, rows, step):
            count = min(step, rows - start)
            await conn.execute(
                """
                WITH made AS (
                    SELECT gen_random_uuid() AS id,
                           now() - random() * interval '23 hours' AS at,
                           'user' || (random() * $2)::int || '@example.com' AS owner
                    FROM generate_series(1, $1)
                ), raw AS (
                    INSERT INTO raw_messages (id, raw, received_at)
                    SELECT id, convert_to(repeat('x', 200), 'UTF8'), at FROM made
                )
                INSERT INTO emails (id, mailbox_owner, subject, body, html, from_addr,
                                    to_addrs, received_at, size, raw_id)
                SELECT gen_random_uuid(), owner, 'old', repeat('y', 100), '', 'a@b.test',
                       ARRAY[owner], at, 300, id FROM made
                """,
                count,
                OWNERS,
            )
        await conn.execute("VACUUM ANALYZE emails")
        await conn.execute("VACUUM ANALYZE raw_messages")
    finally:
        await conn.close()


async def growth(rows: int) -> Row:
    """The writer's INSERT with `rows` already stored: wall and PostgreSQL CPU per message."""
    from app import db, db_batch, retention
    from app.model import Envelope, Prepared
    from app.parse import parse

    url = await fresh_database()
    try:
        pool = await db.create_pool(url)
        await retention.maintain(pool, 24, None, expire_mail=False)
        await _prefill(url, rows)
        prepared = []
        for n in range(GROWTH_MESSAGES):
            raw = typical(f"g{n}")
            envelope = Envelope.new(
                "bench@sender.test", (f"user{n % OWNERS}@example.com",), raw, "127.0.0.1", "b"
            )
            prepared.append(Prepared(envelope, parse(raw), None))
        pg_before = procstat.total_cpu(procstat.postgres_pids())
        started = time.perf_counter()
        for start in range(0, len(prepared), 50):
            await db_batch.insert_batch(pool, prepared[start : start + 50])
        seconds = time.perf_counter() - started
        pg = procstat.cpu_delta(pg_before, procstat.postgres_pids())
        await pool.close()
    finally:
        await drop_database(url)
    row = Row(run=f"insert, {rows:,} rows already stored (batches of 50)")
    row.stored_rate = GROWTH_MESSAGES / seconds
    row.pg_cpu_ms = pg * 1000 / GROWTH_MESSAGES
    row.p50 = seconds * 1000 / GROWTH_MESSAGES  # ms of wall time per message
    return row


async def sizes(target_factory, size: int, count: int) -> Row:  # type: ignore[no-untyped-def]
    """CPU of our processes per message of `size` bytes (one session)."""
    target = await target_factory()
    try:
        body = stuffed(typical("size", size) if size < MIB else _big(size))
        pg_before = procstat.total_cpu(procstat.postgres_pids())
        ours_before = procstat.total_cpu(target.pids())
        results: list[Sent] = []
        started = time.perf_counter()
        errors = await session(target.port, [(f"s{n}", body) for n in range(count)], results)
        await wait_stored(target, count, started)
        row = Row(run=f"{target.name} {size // 1024:,} KB x {count}")
        row.cpu_ms = procstat.cpu_delta(ours_before, target.pids()) * 1000 / count
        row.pg_cpu_ms = procstat.cpu_delta(pg_before, procstat.postgres_pids()) * 1000 / count
        row.errors = errors
        return row
    finally:
        await target.stop()


def _big(size: int) -> bytes:
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n"
    return b"Subject: big\r\nContent-Type: text/plain\r\n\r\n" + line * (size // len(line))


async def recipients(target, count: int, rcpts: int) -> Row:  # type: ignore[no-untyped-def]
    row = await mta.run(target, f"smtp-source {rcpts} recipients", count, recipients=rcpts)
    return row


async def memory25(target, clients: int = 50, one_address: bool = False) -> Row:  # type: ignore[no-untyped-def]
    """Peak RSS while `clients` each send a 25 MiB message at once, from as
    many loopback addresses (or all from 127.0.0.1: one client's share)."""
    body = stuffed(_big(25 * MIB - 1024))
    results: list[Sent] = []
    started = time.perf_counter()
    errors = await asyncio.gather(
        *(
            session(
                target.port,
                [(f"big{n}", body)],
                results,
                source=None if one_address else f"127.0.1.{n + 1}",
            )
            for n in range(clients)
        )
    )
    sources = "one address" if one_address else f"{clients} addresses"
    row = Row(run=f"{target.name} {clients} clients x 25 MiB at once from {sources}")
    row.accepted_rate = sum(r.code == 250 for r in results) / (time.perf_counter() - started)
    row.rss_mib = rss_text(target)
    refused = sum(r.code == 452 for r in results)
    row.errors = sum(errors) - refused  # a 452 here is the budget working
    row.run += f" ({sum(r.code == 250 for r in results)} stored, {refused} told 452 to retry)"
    return row


# Relations whose size counts: each table with its partitions, TOAST and indexes.
STORAGE_SIZES = """
SELECT t.name, coalesce(
    (SELECT sum(pg_total_relation_size(p.relid)) FROM pg_partition_tree(t.name::regclass) p),
    pg_total_relation_size(t.name::regclass)  -- not partitioned: the tree is empty
)::bigint
FROM unnest(ARRAY['emails', 'raw_messages', 'inbox']) AS t(name)
"""


async def storage(target, below: int | None = None, sessions: int = 10) -> Row:  # type: ignore[no-untyped-def]
    """Every corpus message once (or those smaller than `below` bytes): the
    tables' size against the bytes received."""
    skip = {"README.md", ".gitattributes"}
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name not in skip)
    files = [p for p in files if below is None or p.stat().st_size < below]
    raws = [crlf(p.read_bytes()) for p in files]
    started = time.perf_counter()
    results, errors, _ = await load(
        target, [(f"c{n}", stuffed(r)) for n, r in enumerate(raws)], sessions
    )
    accepted = sum(r.code == 250 for r in results)
    await wait_stored(target, accepted, started)
    await sql(target.database_url, "VACUUM ANALYZE")
    sizes = dict(await sql(target.database_url, STORAGE_SIZES))
    received = sum(map(len, raws))
    total = sum(sizes.values())
    which = f" under {below // 1000} KB" if below else ""
    row = Row(
        run=f"storage: {accepted} corpus messages{which}, {received / MIB:.1f} MiB received, "
        f"tables {total / MIB:.1f} MiB ("
        + ", ".join(f"{name} {size / received:.2f}" for name, size in sorted(sizes.items()))
        + " x received)"
    )
    row.ratio = total / received  # the "stored / null sink" column: bytes kept per byte received
    row.errors = errors
    return row
