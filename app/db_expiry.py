"""Retention's SQL: partitions made ahead, expired ones dropped, expired
rows counted and deleted, and the rows kept whatever their age.

Kept (`keep_condition`): emails rows of private_email addresses (in any
spelling of policy.address_spellings: Cybertemp stored `vip@例え.jp`), and
raw_messages rows that an emails row still points at (so a message's raw
bytes go only with its last row). Rows stored before an upgrade (an empty
received_at on a Cybertemp table) are expired only when the operator asks
(`include_existing`).

Locks. Readers and the writer are only ever held up by catalog changes:
every statement that takes ACCESS EXCLUSIVE on a mail table or one of its
partitions (DETACH, ATTACH's lock on the DEFAULT partition, a CHECK added
or dropped) changes the catalog only and waits at most db.LOCK_TIMEOUT for
its lock. Row copies and scans happen where nobody waits for them: in a
table detached before (`detach_expiring`, `finish_expiring`), under ROW
EXCLUSIVE (rows moved), or under SHARE UPDATE EXCLUSIVE (VALIDATE
CONSTRAINT). What makes the catalog-only ATTACH possible (docs/decisions.md,
"Retention without long locks"):

- the DEFAULT partition carries a validated CHECK (received_at < X), its
  fence, with X at or below every range attached above it: PostgreSQL then
  knows without a scan that the DEFAULT partition holds no row of a new
  range;
- a partition from the top of the made ranges to MAXVALUE (the future
  partition) catches rows beyond them (partitions made late), so the
  fence never refuses a row; new ranges are split off it;
- a new range's table carries a CHECK matching its bounds, so its own rows
  (moved from the future partition) need no scan either.

Every DDL transaction here (`ddl`) takes the schema advisory lock first:
workers and `python -m app retention` take turns, and two of them never
copy the same kept rows back. A whole run holds RUN_LOCK (`run_lock`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

from . import db
from .db_schema import SCHEMA_LOCK
from .policy import address_spellings

q = db.quote_ident

# Lock waits that hold up no reader or writer: ROW EXCLUSIVE (a copy into the
# table) and SHARE UPDATE EXCLUSIVE (VALIDATE) conflict with neither, and a
# request for them queued behind someone else's does not make readers queue.
PATIENT_LOCK_TIMEOUT = "10s"
# Copies and scans that may take long on a big table (the pool's default
# command_timeout is 60 s).
LONG = 3600.0
# The fence of a DEFAULT partition: CHECK (received_at < bound), named after its bound.
FENCE_PREFIX = "retention_received_before_"
FENCE_FORMAT = "%Y%m%d_%H%M%S_%f"
# Pauses between attempts at a catalog-only step inside a longer transaction.
ATTACH_RETRIES = (0.1, 0.2, 0.4, 0.8, 1.6)
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
    bound (retention.fence sees to it).
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


# The DEFAULT partition's fence ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Fence:
    """A CHECK (received_at < bound) of ours on a DEFAULT partition."""

    name: str
    bound: datetime.datetime
    valid: bool  # validated: PostgreSQL uses it to skip scans; every fence refuses rows


def fence_name(bound: datetime.datetime) -> str:
    return FENCE_PREFIX + bound.astimezone(datetime.UTC).strftime(FENCE_FORMAT)


async def fences(db_: db.Pool | db.Connection, default: str) -> list[Fence]:
    rows = await db_.fetch(
        "SELECT conname, convalidated FROM pg_constraint WHERE conrelid = to_regclass($1) "
        "AND contype = 'c' AND starts_with(conname, $2) ORDER BY conname",
        q(default),
        FENCE_PREFIX,
    )
    return [
        Fence(
            r["conname"],
            datetime.datetime.strptime(r["conname"][len(FENCE_PREFIX) :], FENCE_FORMAT).replace(
                tzinfo=datetime.UTC
            ),
            bool(r["convalidated"]),
        )
        for r in rows
    ]


async def add_fence(pool: db.Pool, default: str, bound: datetime.datetime) -> str:
    """Add the fence `bound` to `default` NOT VALID (a catalog change; it refuses
    new rows from now on, existing ones are checked by `validate_fence`)."""
    name = fence_name(bound)
    async with ddl(pool) as conn:
        known = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass($1) "
            "AND conname = $2)",
            q(default),
            name,
        )
        if not known:
            await conn.execute(
                f"ALTER TABLE {q(default)} ADD CONSTRAINT {q(name)} "
                f"CHECK (received_at < {quote_time(bound)}) NOT VALID"
            )
    return name


async def validate(conn: db.Connection, default: str, fence: str) -> bool:
    """VALIDATE the fence (a scan under SHARE UPDATE EXCLUSIVE: readers and
    writers go on); False, changing nothing, if a row is past it."""
    try:
        async with conn.transaction():  # a savepoint
            await conn.execute(
                f"ALTER TABLE {q(default)} VALIDATE CONSTRAINT {q(fence)}", timeout=LONG
            )
    except db.asyncpg.CheckViolationError:
        return False
    return True


async def validate_fence(pool: db.Pool, default: str, fence: str) -> bool:
    async with ddl(pool, PATIENT_LOCK_TIMEOUT) as conn:
        return await validate(conn, default, fence)


async def drop_fences(pool: db.Pool, default: str, names: Sequence[str]) -> None:
    if not names:
        return
    async with ddl(pool) as conn:
        await conn.execute(
            f"ALTER TABLE {q(default)} "
            + ", ".join(f"DROP CONSTRAINT IF EXISTS {q(n)}" for n in names)
        )


async def drop_unvalidated_fences(pool: db.Pool, default: str) -> list[str]:
    """Drop the fences of `default` that are NOT VALID (under RUN_LOCK: left by a
    run that stopped before validating them); return their names."""
    stale = [f.name for f in await fences(pool, default) if not f.valid]
    await drop_fences(pool, default, stale)
    return stale


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


# Expired partitions: detached, their kept rows copied back, dropped --------------------


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
