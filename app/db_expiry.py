"""Retention's SQL for expiry: expired partitions detached, their kept rows
copied back, dropped; expired rows counted and deleted; the rows kept
whatever their age; and the record of the first (report-only) run.

Kept (`keep_condition`): emails rows of private_email addresses (in any
spelling of policy.address_spellings: Cybertemp stored `vip@例え.jp`), and
raw_messages rows that an emails row still points at (so a message's raw
bytes go only with its last row). Rows stored before an upgrade (an empty
received_at on a Cybertemp table) are expired only when the operator asks
(`include_existing`). The lock rules each step keeps: db_retention_locks.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from typing import Any

from . import db
from .db_retention_locks import (
    LONG,
    PATIENT_LOCK_TIMEOUT,
    ddl,
    is_partition_of,
    move_rows,
    quote_text,
    stored_columns,
)
from .policy import address_spellings

q = db.quote_ident


def mark(table: str) -> str:
    """The comment on a partition detached by retention and not dropped yet
    (followed by its bound: `recorded_bound` reads it back)."""
    return f"tempmail retention: expired partition of {table}, being dropped"


# The bound a detached partition had, as its mark records it (printed by PostgreSQL).
_WAS = re.compile(
    r"; was (FOR VALUES FROM \((MINVALUE|'[-0-9 :.+]+')\) TO \((MAXVALUE|'[-0-9 :.+]+')\))"
)


async def marked(conn: db.Connection, table: str, name: str) -> str | None:
    """The mark of `name`, detached from `table` by retention; None if it has none."""
    text = await conn.fetchval("SELECT obj_description(to_regclass($1), 'pg_class')", q(name))
    return text if isinstance(text, str) and text.startswith(mark(table)) else None


async def detach_expiring(pool: db.Pool, table: str, name: str) -> bool:
    """DETACH partition `name` from `table` (catalog work under ACCESS EXCLUSIVE
    on `table` and its DEFAULT partition) and mark it with its bound; False if
    it is not a partition of `table` (any more). From the commit on, its rows
    are out of `table`: `finish_expiring` puts the kept ones back."""
    async with ddl(pool) as conn:
        if not await is_partition_of(conn, name, table):
            return False
        await conn.execute("SET LOCAL TimeZone = 'UTC'")  # the bound printed in UTC
        bound = await conn.fetchval(
            "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE oid = to_regclass($1)",
            q(name),
        )
        await conn.execute(f"ALTER TABLE {q(table)} DETACH PARTITION {q(name)}")
        comment = f"{mark(table)}; was {bound}"
        await conn.execute(f"COMMENT ON TABLE {q(name)} IS {quote_text(comment)}")
        return True


async def expiring(pool: db.Pool, table: str) -> list[str]:
    """The tables detached from `table` and not dropped yet (a run stopped
    between `detach_expiring` and `finish_expiring`)."""
    rows = await pool.fetch(
        "SELECT c.relname FROM pg_class c WHERE c.relkind = 'r' AND NOT c.relispartition "
        "AND c.relnamespace = current_schema()::regnamespace "
        "AND starts_with(obj_description(c.oid, 'pg_class'), $1) ORDER BY 1",
        mark(table),
    )
    return [r[0] for r in rows]


async def recorded_bound(pool: db.Pool, table: str, name: str) -> str | None:
    """The bound `name` had in `table` when `detach_expiring` detached it, as
    PostgreSQL printed it (in UTC); None if its mark records none (a release
    before this one detached it)."""
    async with pool.acquire() as conn:
        found = _WAS.search(await marked(conn, table, name) or "")
    return None if found is None else found[1]


async def reattach(
    pool: db.Pool,
    table: str,
    name: str,
    bound: str,
    lower: datetime.datetime | None,
    upper: datetime.datetime | None,
    default: str | None,
) -> None:
    """ATTACH `name`, detached from `table` by `detach_expiring`, again with
    the bound it had (`bound`, spanning [lower, upper)), and unmark it: its
    copy back failed, and its kept rows must not stay out of sight.

    Rows of its range that reached the `default` partition since the detach
    (old mail replayed) move into it first, under the DEFAULT partition's
    lock that ATTACH takes anyway. ATTACH scans the DEFAULT partition under
    that lock (its fence, above this range, proves nothing): a failure's
    price, not a run's.
    """
    async with ddl(pool) as conn:
        if default is not None:
            await conn.execute(f"LOCK TABLE {q(default)} IN ACCESS EXCLUSIVE MODE")
            await move_rows(conn, default, name, lower, upper)
        await conn.execute(f"ALTER TABLE {q(table)} ATTACH PARTITION {q(name)} {bound}")
        await conn.execute(f"COMMENT ON TABLE {q(name)} IS NULL")


async def newest(pool: db.Pool, relation: str) -> datetime.datetime | None:
    value = await pool.fetchval(f"SELECT max(received_at) FROM {q(relation)}", timeout=LONG)
    return value if isinstance(value, datetime.datetime) else None


async def finish_expiring(
    pool: db.Pool, table: str, name: str, private: frozenset[str]
) -> tuple[int, int] | None:
    """Copy the kept rows of `name` (detached by `detach_expiring`) back into
    `table`, where they land in the DEFAULT partition, and drop it, in one
    transaction; return (rows dropped, rows kept), None if another worker did.

    Nobody waits for it: `name` is no partition any more, and the copy takes
    ROW EXCLUSIVE on `table` like any insert. The kept rows are out of
    `table` from the detach to this commit (the window docs/decisions.md
    states).
    """
    async with ddl(pool, PATIENT_LOCK_TIMEOUT) as conn:
        if await marked(conn, table, name) is None:
            return None
        rows = int(await conn.fetchval(f"SELECT count(*) FROM {q(name)}", timeout=LONG))
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
    # Private: the owner as stored (by us, or by Cybertemp before the switch:
    # `vip@例え.jp`) is a spelling of a private address.
    spellings = [address_spellings(private)]
    if table == "emails":
        return f"{db.folded('t.mailbox_owner')} = ANY(${param}::text[])", spellings
    if not as_if_emails_expired:
        return "EXISTS (SELECT 1 FROM emails e WHERE e.raw_id = t.id)", []
    return (
        "EXISTS (SELECT 1 FROM emails e WHERE e.raw_id = t.id AND (e.received_at IS NULL "
        f"OR e.received_at >= $1 OR {db.folded('e.mailbox_owner')} = ANY(${param}::text[])))",
        spellings,
    )


def age_condition(table: str, include_existing: bool) -> str:
    """SQL true for rows received before $1; pre-upgrade rows only if `include_existing`."""
    if table == "emails" and include_existing:
        return "(t.received_at < $1 OR (t.received_at IS NULL AND t.created_at < $1))"
    return "t.received_at < $1"  # NULL (stored before the upgrade) is never less


async def copy_kept_rows(
    conn: db.Connection, table: str, relation: str, private: frozenset[str]
) -> int:
    """Insert the kept rows of `relation` (detached from `table`) into `table`."""
    names = await stored_columns(conn, table)
    keep, args = keep_condition(table, private, 1)
    status = await conn.execute(
        f"INSERT INTO {q(table)} ({names}) SELECT {names} FROM {q(relation)} t WHERE {keep}",
        *args,
        timeout=LONG,
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
