"""Retention's SQL for partitions: reading a table's partitions, and making
new ones (`create_partition` the plain way, `split_future` off the future
partition, `add_future` the future partition itself), each under the lock
rules of db_retention_locks.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Sequence

from . import db
from .db_fences import fences, validate
from .db_retention_locks import (
    PATIENT_LOCK_TIMEOUT,
    ddl,
    exists,
    is_partition_of,
    move_rows,
    quote_time,
)

q = db.quote_ident

# Pauses between attempts at a catalog-only step inside a longer transaction.
ATTACH_RETRIES = (0.1, 0.2, 0.4, 0.8, 1.6)


async def partitions(pool: db.Pool, table: str) -> list[tuple[str, str]] | None:
    """(name, bound expression) of each partition of `table`, bounds printed in
    UTC; None if `table` is a plain table."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL TimeZone = 'UTC'")
        if await db.relkind(conn, table) != "p":
            return None
        rows = await conn.fetch(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass($1)",
            table,
        )
        return [(r[0], r[1]) for r in rows]


async def relation_size(pool: db.Pool, name: str) -> int:
    """Bytes in the table's own pages (what a scan of it reads)."""
    return int(await pool.fetchval("SELECT pg_relation_size(to_regclass($1))", q(name)) or 0)


def range_check(name: str, lower: datetime.datetime, upper: datetime.datetime | None) -> str:
    """CONSTRAINT clause: the CHECK matching the range [lower, upper) of partition
    `name` (upper None: MAXVALUE), with which ATTACH needs no scan of it."""
    below = "" if upper is None else f" AND received_at < {quote_time(upper)}"
    return f"CONSTRAINT {q(name[:57] + '_range')} CHECK (received_at >= {quote_time(lower)}{below})"


async def make_table(
    conn: db.Connection,
    table: str,
    name: str,
    lower: datetime.datetime | None = None,
    upper: datetime.datetime | None = None,
) -> None:
    """A plain table shaped like `table`, to be attached as its partition: with
    its indexes (ATTACH then only links them, instead of building them under
    its lock), its generated columns (ATTACH refuses a plain column where the
    parent's is generated: an operator may add one), and the CHECK of
    [lower, upper) when `lower` is given."""
    check = "" if lower is None else ", " + range_check(name, lower, upper)
    await conn.execute(
        f"CREATE TABLE {q(name)} (LIKE {q(table)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
        f"INCLUDING GENERATED INCLUDING INDEXES{check})"
    )


async def create_partition(
    pool: db.Pool,
    table: str,
    name: str,
    lower: datetime.datetime,
    upper: datetime.datetime,
    default: str | None,
) -> bool:
    """Add partition `name` of `table` for [lower, upper); False if it exists.

    For a table without a future partition (a fresh one, before its first
    ranges exist; or a range below the live ones). Rows of the range already
    in the DEFAULT partition move into it first (otherwise PostgreSQL refuses
    the new range), then again under ATTACH's lock on the DEFAULT partition,
    taken first (those committed meanwhile: mail arriving); ATTACH scans the
    DEFAULT partition unless its fence proves the range empty: cheap while
    it is small, as it is on a fresh table. Above the live ranges
    `split_future` does it without a scan.
    """
    async with ddl(pool) as conn:
        # Workers make the same partitions at start: one at a time, once.
        if await exists(conn, name):
            return False
        await make_table(conn, table, name)
        if default is not None:
            await move_rows(conn, default, name, lower, upper)
            await conn.execute(f"LOCK TABLE {q(default)} IN ACCESS EXCLUSIVE MODE")
            await move_rows(conn, default, name, lower, upper)
        await conn.execute(
            f"ALTER TABLE {q(table)} ATTACH PARTITION {q(name)} "
            f"FOR VALUES FROM ({quote_time(lower)}) TO ({quote_time(upper)})"
        )
        return True


async def split_future(
    pool: db.Pool,
    table: str,
    default: str | None,
    future: str,
    ranges: Sequence[tuple[str, datetime.datetime, datetime.datetime]],
) -> list[str]:
    """Add partitions (name, lower, upper) of `table`, contiguous from the
    future partition's lower bound up, and start the future partition at the
    last upper bound; return the names made ([] if another worker made them).

    Rows already in the future partition (partitions made late) move into
    the new ones first, under ROW EXCLUSIVE. Then, under ACCESS EXCLUSIVE on
    `table`: DETACH the future partition, move the rows committed into it
    since (mail arriving meanwhile: otherwise its new CHECK fails, at every
    run while mail arrives), ATTACH the new ones (their CHECKs and the
    DEFAULT partition's fence prove them without a scan), give the future
    partition the CHECK of its new range (a scan of what is left in it:
    nothing, unless a clock is hours ahead) and ATTACH it again. Nothing is
    made unless `default` has a valid fence at or below the first lower
    bound (retention_partitions.fence sees to it).
    """
    if not ranges:
        return []
    async with ddl(pool) as conn:
        if await exists(conn, ranges[0][0]) or not await is_partition_of(conn, future, table):
            return []
        if default is not None and not any(
            f.valid and f.bound <= ranges[0][1] for f in await fences(conn, default)
        ):
            return []  # ATTACH would scan the DEFAULT partition: the caller fences it first
        for name, lower, upper in ranges:
            await make_table(conn, table, name, lower, upper)
            await move_rows(conn, future, name, lower, upper)
        await conn.execute(f"ALTER TABLE {q(table)} DETACH PARTITION {q(future)}")
        for name, lower, upper in ranges:
            await move_rows(conn, future, name, lower, upper)
        for name, lower, upper in ranges:
            await conn.execute(
                f"ALTER TABLE {q(table)} ATTACH PARTITION {q(name)} "
                f"FOR VALUES FROM ({quote_time(lower)}) TO ({quote_time(upper)})"
            )
        top = ranges[-1][2]
        await conn.execute(
            f"ALTER TABLE {q(future)} DROP CONSTRAINT IF EXISTS {q(future[:57] + '_range')}, "
            f"ADD {range_check(future, top, None)}"
        )
        await conn.execute(
            f"ALTER TABLE {q(table)} ATTACH PARTITION {q(future)} "
            f"FOR VALUES FROM ({quote_time(top)}) TO (MAXVALUE)"
        )
        return [name for name, _, _ in ranges]


async def add_future(
    pool: db.Pool, table: str, default: str, future: str, lower: datetime.datetime, fence: str
) -> bool:
    """Attach `future` for [lower, MAXVALUE) to `table`; False if a row of the
    DEFAULT partition is past the fence after all.

    `fence` (bound `lower`, added NOT VALID before) is validated here, after
    the DEFAULT partition's rows from `lower` on (partitions made late) moved
    into `future`: the move, the scan and ATTACH's proof are one transaction,
    so those rows never disappear. Only ATTACH takes ACCESS EXCLUSIVE (on the
    DEFAULT partition and `future`), and does catalog work only (the fence and
    the CHECK of `future` prove both); it is retried a few times under the
    lock timeout, a savepoint each, so the scan is not redone for a busy
    moment. Raises LockNotAvailableError if it stays busy.
    """
    async with ddl(pool, PATIENT_LOCK_TIMEOUT) as conn:
        if await exists(conn, future):
            return await is_partition_of(conn, future, table)
        await make_table(conn, table, future, lower)
        await move_rows(conn, default, future, lower, None)
        if not await validate(conn, default, fence):
            return False
        await conn.execute(f"SET LOCAL lock_timeout = '{db.LOCK_TIMEOUT}'")
        attach = (
            f"ALTER TABLE {q(table)} ATTACH PARTITION {q(future)} "
            f"FOR VALUES FROM ({quote_time(lower)}) TO (MAXVALUE)"
        )
        for pause in ATTACH_RETRIES:
            try:
                async with conn.transaction():  # a savepoint
                    await conn.execute(attach)
                return True
            except db.asyncpg.LockNotAvailableError:
                await asyncio.sleep(pause)
        raise db.asyncpg.LockNotAvailableError(f"{table}: could not attach {future}")
