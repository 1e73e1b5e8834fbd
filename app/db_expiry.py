"""Retention's SQL: partitions made ahead and dropped, expired rows counted
and deleted, and the rows kept whatever their age.

Kept (`keep_condition`): emails rows of private_email addresses, and
raw_messages rows that an emails row still points at (so a message's raw
bytes go only with its last row). Rows stored before an upgrade (an empty
received_at on a Cybertemp table) are expired only when the operator asks
(`include_existing`). Statements that take a table lock run under
db.LOCK_TIMEOUT; deletes are small batches in short transactions that
skip rows being read, so readers and the writer are never held up.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from . import db
from .db_schema import SCHEMA_LOCK

q = db.quote_ident


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


def quote_time(moment: datetime.datetime) -> str:
    return "'" + moment.isoformat() + "'"


async def create_partition(
    pool: db.Pool,
    table: str,
    name: str,
    lower: datetime.datetime,
    upper: datetime.datetime,
    default: str | None,
) -> bool:
    """Add partition `name` of `table` for [lower, upper); False if it exists.

    Made as a plain table, then attached: ATTACH takes a weaker lock on the
    parent than CREATE ... PARTITION OF, so inserts go on meanwhile. Rows of
    the range already in the DEFAULT partition move into it first (otherwise
    PostgreSQL refuses the new range).
    """
    async with pool.acquire() as conn, conn.transaction():
        # Workers make the same partitions at start: one at a time, once.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", q(name)):
            return False
        await conn.execute(f"SET LOCAL lock_timeout = '{db.LOCK_TIMEOUT}'")
        await conn.execute(
            f"CREATE TABLE {q(name)} (LIKE {q(table)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
        if default is not None:
            await conn.execute(
                f"WITH moved AS (DELETE FROM {q(default)} "
                "WHERE received_at >= $1 AND received_at < $2 RETURNING *) "
                f"INSERT INTO {q(name)} SELECT * FROM moved",
                lower,
                upper,
            )
        await conn.execute(
            f"ALTER TABLE {q(table)} ATTACH PARTITION {q(name)} "
            f"FOR VALUES FROM ({quote_time(lower)}) TO ({quote_time(upper)})"
        )
        return True


async def drop_partition(
    pool: db.Pool, table: str, name: str, private: frozenset[str]
) -> tuple[int, int]:
    """Drop partition `name` of `table`, keeping the rows retention must keep
    (keep_condition); return (rows dropped, rows kept).

    Kept rows go back into the parent after the partition is detached, so
    they land in the DEFAULT partition; detach, copy and drop are one
    transaction under LOCK_TIMEOUT, so no reader ever sees them missing.
    """
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{db.LOCK_TIMEOUT}'")
        # No row may arrive between the look and the drop (a late spool
        # replay): SHARE stops writes into this partition, not reads.
        await conn.execute(f"LOCK TABLE {q(name)} IN SHARE MODE")
        rows = int(await conn.fetchval(f"SELECT count(*) FROM {q(name)}"))
        kept = 0
        if await has_kept_rows(conn, table, name, private):
            await conn.execute(f"ALTER TABLE {q(table)} DETACH PARTITION {q(name)}")
            kept = await copy_kept_rows(conn, table, name, private)
        await conn.execute(f"DROP TABLE {q(name)}")
        return rows - kept, kept


def keep_condition(
    table: str, private: frozenset[str], param: int, as_if_emails_expired: bool = False
) -> tuple[str, list[Any]]:
    """SQL (on alias `t`) true for rows retention keeps, and its arguments from $`param`.

    A raw message is kept while an emails row points at it; a survey, which
    deletes nothing, counts as if the expired emails rows (received before
    $1) were gone already, as they are when a real run reaches raw_messages.
    """
    if table == "emails":
        return f"lower(t.mailbox_owner) = ANY(${param}::text[])", [sorted(private)]
    if not as_if_emails_expired:
        return "EXISTS (SELECT 1 FROM emails e WHERE e.raw_id = t.id)", []
    return (
        "EXISTS (SELECT 1 FROM emails e WHERE e.raw_id = t.id AND (e.received_at IS NULL "
        f"OR e.received_at >= $1 OR lower(e.mailbox_owner) = ANY(${param}::text[])))",
        [sorted(private)],
    )


def age_condition(table: str, include_existing: bool) -> str:
    """SQL true for rows received before $1; pre-upgrade rows only if `include_existing`."""
    if table == "emails" and include_existing:
        return "(t.received_at < $1 OR (t.received_at IS NULL AND t.created_at < $1))"
    return "t.received_at < $1"  # NULL (stored before the upgrade) is never less


async def has_kept_rows(
    conn: db.Connection, table: str, relation: str, private: frozenset[str]
) -> bool:
    keep, args = keep_condition(table, private, 1)
    return bool(
        await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {q(relation)} t WHERE {keep})", *args)
    )


async def copy_kept_rows(
    conn: db.Connection, table: str, relation: str, private: frozenset[str]
) -> int:
    """Insert the kept rows of `relation` (detached from `table`) into `table`."""
    names = ", ".join(q(c) for c in await db.columns(conn, table))
    keep, args = keep_condition(table, private, 1)
    status = await conn.execute(
        f"INSERT INTO {q(table)} ({names}) SELECT {names} FROM {q(relation)} t WHERE {keep}",
        *args,
    )
    return int(status.rsplit(" ", 1)[1])


@dataclasses.dataclass(frozen=True)
class Counts:
    expired: int  # received before the cutoff and not kept: what a run deletes
    kept: int  # received before the cutoff, kept (private address, raw still referenced)
    existing: int  # stored before the upgrade (received_at empty): kept unless asked


async def count_expired(
    pool: db.Pool,
    table: str,
    relation: str,
    cutoff: datetime.datetime,
    private: frozenset[str],
    include_existing: bool = False,
) -> Counts:
    """What retention would do to `relation` (`table` itself or one of its partitions)."""
    age = age_condition(table, include_existing)
    keep, args = keep_condition(table, private, 2, as_if_emails_expired=True)
    existing = "t.received_at IS NULL" if table == "emails" and not include_existing else "false"
    row = await pool.fetchrow(
        f"SELECT count(*) FILTER (WHERE {age} AND NOT {keep}), "
        f"count(*) FILTER (WHERE {age} AND {keep}), count(*) FILTER (WHERE {existing}) "
        f"FROM {q(relation)} t",
        cutoff,
        *args,
    )
    assert row is not None
    return Counts(int(row[0]), int(row[1]), int(row[2]))


async def delete_expired(
    pool: db.Pool,
    table: str,
    relation: str,
    cutoff: datetime.datetime,
    private: frozenset[str],
    limit: int,
    include_existing: bool = False,
) -> int:
    """Delete up to `limit` expired, unkept rows of `relation`; return how many.

    One short transaction; rows locked by others are skipped (next batch).
    """
    age = age_condition(table, include_existing)
    keep, args = keep_condition(table, private, 3)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{db.LOCK_TIMEOUT}'")
        await conn.execute("SET LOCAL statement_timeout = '30s'")
        status = await conn.execute(
            f"DELETE FROM {q(relation)} WHERE ctid IN (SELECT ctid FROM {q(relation)} t "
            f"WHERE {age} AND NOT {keep} LIMIT $2 FOR UPDATE SKIP LOCKED)",
            cutoff,
            limit,
            *args,
        )
    return int(status.rsplit(" ", 1)[1])


async def count_rows(pool: db.Pool, relation: str) -> int:
    return int(await pool.fetchval(f"SELECT count(*) FROM {q(relation)}"))


async def retention_started(pool: db.Pool) -> bool:
    """Has the first (report-only) retention run happened on this database?"""
    return bool(await pool.fetchval("SELECT EXISTS (SELECT 1 FROM retention_state)"))


async def mark_retention_started(pool: db.Pool, report: str) -> None:
    await pool.execute(
        "INSERT INTO retention_state (report) VALUES ($1) ON CONFLICT DO NOTHING", report
    )
