"""Retention's SQL, the rules every step keeps: the DDL transaction, the run
lock, and the row moves its steps are made of.

Locks. Readers and the writer are only ever held up by catalog changes:
every statement that takes ACCESS EXCLUSIVE on a mail table or one of its
partitions (DETACH, ATTACH's lock on the DEFAULT partition, a CHECK added
or dropped) changes the catalog only and waits at most db.LOCK_TIMEOUT for
its lock. Row copies and scans happen where nobody waits for them: in a
table detached before (db_expiry's `detach_expiring`, `finish_expiring`),
under ROW EXCLUSIVE (rows moved: `move_rows`), or under SHARE UPDATE
EXCLUSIVE (VALIDATE CONSTRAINT, db_fences). What makes the catalog-only
ATTACH possible (docs/decisions.md, "Retention without long locks"):

- the DEFAULT partition carries a validated CHECK (received_at < X), its
  fence (db_fences), with X at or below every range attached above it:
  PostgreSQL then knows without a scan that the DEFAULT partition holds no
  row of a new range;
- a partition from the top of the made ranges to MAXVALUE (the future
  partition) catches rows beyond them (partitions made late), so the
  fence never refuses a row; new ranges are split off it (db_partitions);
- a new range's table carries a CHECK matching its bounds, so its own rows
  (moved from the future partition) need no scan either.

Every DDL transaction of retention (`ddl`) takes the schema advisory lock
first: workers and `python -m app retention` take turns, and two of them
never copy the same kept rows back. A whole run holds RUN_LOCK (`run_lock`).
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import AsyncIterator

from . import db
from .db_schema import SCHEMA_LOCK

q = db.quote_ident

# Lock waits that hold up no reader or writer: ROW EXCLUSIVE (a copy into the
# table) and SHARE UPDATE EXCLUSIVE (VALIDATE) conflict with neither, and a
# request for them queued behind someone else's does not make readers queue.
PATIENT_LOCK_TIMEOUT = "10s"
# Copies and scans that may take long on a big table (the pool's default
# command_timeout is 60 s).
LONG = 3600.0
# One retention run at a time (workers, `python -m app retention`), a session
# advisory lock held for the whole run: a fence its holder finds NOT VALID is
# then no other run's, about to be validated, but one a stopped run left.
RUN_LOCK = SCHEMA_LOCK + 2


def quote_time(moment: datetime.datetime) -> str:
    return "'" + moment.isoformat() + "'"


def quote_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@contextlib.asynccontextmanager
async def ddl(pool: db.Pool, lock_timeout: str = db.LOCK_TIMEOUT) -> AsyncIterator[db.Connection]:
    """One transaction of retention DDL: after the schema advisory lock (workers
    take turns), every table lock waited for at most `lock_timeout`."""
    async with pool.acquire() as conn, conn.transaction():
        # Another worker's copy or VALIDATE may take a while: it holds no table lock we need.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK, timeout=LONG)
        await conn.execute(f"SET LOCAL lock_timeout = '{lock_timeout}'")
        yield conn


@contextlib.asynccontextmanager
async def run_lock(pool: db.Pool, wait: bool) -> AsyncIterator[bool]:
    """Hold RUN_LOCK for the block; True, or False (holding nothing) if
    another run, on any host, holds it and `wait` is false.

    Held by a transaction left open on a connection of its own, not by the
    session: a transaction-mode pooler keeps one server for a transaction,
    never for a session, so this holds through PgBouncer or Supabase's
    pooler too, and a lost connection ends the transaction and the lock.
    The transaction takes no snapshot between statements: it holds back
    no vacuum and no concurrent index build."""
    async with pool.acquire() as conn, conn.transaction(isolation="read_committed"):
        if wait:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", RUN_LOCK, timeout=LONG)
        elif not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", RUN_LOCK):
            yield False
            return
        yield True


async def exists(conn: db.Connection, name: str) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", q(name)))


async def is_partition_of(conn: db.Connection, name: str, table: str) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass($1) "
            "AND inhparent = to_regclass($2))",
            q(name),
            q(table),
        )
    )


async def stored_columns(conn: db.Connection, table: str) -> str:
    """The columns of `table` an INSERT may name, quoted and comma-separated:
    all but generated ones (PostgreSQL computes those, and refuses a value)."""
    rows = await conn.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 "
        "AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
        q(table),
    )
    return ", ".join(q(r[0]) for r in rows)


async def move_rows(
    conn: db.Connection,
    source: str,
    target: str,
    lower: datetime.datetime | None,
    upper: datetime.datetime | None,
) -> int:
    """Move the rows of `source` received in [lower, upper) into `target`, in
    this transaction (readers see them in `source` until it commits); None:
    no bound on that side."""
    conditions, args = [], []
    for op, value in ((">=", lower), ("<", upper)):
        if value is not None:
            args.append(value)
            conditions.append(f"received_at {op} ${len(args)}")
    where = " AND ".join(conditions) or "true"
    names = await stored_columns(conn, target)
    status = await conn.execute(
        f"WITH moved AS (DELETE FROM {q(source)} WHERE {where} "
        f"RETURNING {names}) INSERT INTO {q(target)} ({names}) SELECT {names} FROM moved",
        *args,
        timeout=LONG,
    )
    return int(status.rsplit(" ", 1)[1])
