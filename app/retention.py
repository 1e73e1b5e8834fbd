"""Retention: partitions made ahead of time, old mail expired, some mail never.

Both shapes of the mail tables work. Partitioned ones (every fresh install,
and `raw_messages` always) expire by dropping whole partitions: no
row-by-row delete, no dead tuples. A plain `emails` (a Cybertemp operator's
table, kept as it was) loses its expired rows in small batches, each a
short transaction. Rows outside every range partition (the DEFAULT one:
spool replays of old mail) are deleted in small batches too.

No step holds a lock that readers or the writer wait for longer than a
catalog change takes (db_expiry says how): a busy table means "next run",
never a queue of blocked reads and inserts. The partitions of a table:

    DEFAULT  kept mail (private addresses), old strays; its fence, a
             validated CHECK (received_at < X), X at or below `future`
    ranges   contiguous, about 1/24 of the retention each, made ahead
    future   [top of the ranges, MAXVALUE): empty unless they were made late

New ranges are split off the future partition; an expired range is
detached, its kept rows are copied back (into DEFAULT) from the detached
table, and it is dropped.

Never expired by the periodic run:
- rows stored before the upgrade (an empty `received_at` in a Cybertemp
  table; the `*_legacy` partitions of our old migration 002): only
  `python -m app retention --include-existing` deletes them;
- mail of `private_email` addresses (and the raw messages it points at):
  when its partition is dropped those rows move to the DEFAULT partition.
  They are out of sight between the detach and the commit of their copy
  (one transaction, all of them at once); if the copy fails, the partition
  is attached again and dropped at a later run. Until the private list is
  loaded, nothing expires.

The first run on a database only logs what it would delete and records
that it ran (table retention_state); later runs delete.

The planning here is pure (`partition_width`, `plan`, `parse_bound`,
`steps`, `describe`); the SQL is in `db_expiry`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass

from . import db, db_expiry

log = logging.getLogger("app.retention")

UTC = datetime.UTC
HOUR = datetime.timedelta(hours=1)
# Widths that divide a day, so partition bounds fall on round hours.
WIDTHS_HOURS = (1, 2, 3, 4, 6, 8, 12, 24)
TABLES = ("emails", "raw_messages")
DEFAULT_BATCH = 5000  # rows of a DEFAULT partition deleted per short transaction
# Below this size (bytes) an ATTACH's scan of the DEFAULT partition takes milliseconds:
# missing ranges (a fresh table, or ranges that ran out) are then made the plain way.
SMALL_DEFAULT = 16 * 2**20


def partition_width(retention_hours: float) -> datetime.timedelta:
    """About 1/24 of the retention (1 hour to 1 day); a day when mail is kept forever.

    Mail is kept at least RETENTION_HOURS and at most one width more, and a
    table has about 25 partitions plus the ones made ahead.
    """
    if retention_hours <= 0:
        return 24 * HOUR
    fitting = [w for w in WIDTHS_HOURS if w <= retention_hours / 24]
    return (fitting[-1] if fitting else 1) * HOUR


def ahead(width: datetime.timedelta) -> datetime.timedelta:
    """How far past now partitions must exist: two widths, and at least 6 hours."""
    return max(2 * width, 6 * HOUR)


def floor_to(moment: datetime.datetime, width: datetime.timedelta) -> datetime.datetime:
    epoch = datetime.datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((moment - epoch) // width) * width


@dataclass(frozen=True)
class Partition:
    name: str
    lower: datetime.datetime | None  # None: MINVALUE
    upper: datetime.datetime | None  # None: MAXVALUE
    is_default: bool = False
    is_future: bool = False  # ours, from the made ranges to MAXVALUE (future_name)


_BOUND = re.compile(r"FOR VALUES FROM \((.+)\) TO \((.+)\)")


def _bound_value(text: str) -> datetime.datetime | None:
    text = text.strip()
    if text in ("MINVALUE", "MAXVALUE"):
        return None
    return datetime.datetime.fromisoformat(text.strip("'")).astimezone(UTC)


def parse_bound(name: str, bound: str) -> Partition:
    """A partition from `pg_get_expr(relpartbound)`, as printed with TimeZone UTC."""
    if bound.strip() == "DEFAULT":
        return Partition(name, None, None, is_default=True)
    match = _BOUND.fullmatch(bound.strip())
    if match is None:
        raise ValueError(f"partition {name}: unexpected bound {bound!r}")
    return Partition(name, _bound_value(match[1]), _bound_value(match[2]))


def partition_name(table: str, lower: datetime.datetime) -> str:
    return f"{table}_p{lower:%Y%m%d_%H}"


def future_name(table: str) -> str:
    return f"{table}_future"


def plan(
    existing: Sequence[Partition], now: datetime.datetime, width: datetime.timedelta
) -> list[tuple[datetime.datetime, datetime.datetime]]:
    """The (lower, upper) ranges to create so that partitions cover now + ahead.

    With a future partition they start at its lower bound, and after a stall
    the first one reaches up to the current width-aligned slot (it holds the
    mail that arrived meanwhile). Without one they continue from the highest
    existing bound, or from the current slot after a gap (older mail then
    goes to DEFAULT). The first range may be short, to come back onto
    width-aligned bounds.
    """
    future = next((p for p in existing if p.is_future), None)
    current = floor_to(now, width)
    end = now + ahead(width)
    ranges = []
    if future is not None:
        assert future.lower is not None
        start = future.lower
        if start < current:
            ranges.append((start, current))
            start = current
    elif any(p.upper is None and not p.is_default for p in existing):
        return []  # a MAXVALUE partition not ours already covers the future
    else:
        uppers = [p.upper for p in existing if p.upper is not None and not p.is_default]
        start = max([*uppers, current])
    while start < end:
        upper = floor_to(start, width) + width
        ranges.append((start, upper))
        start = upper
    return ranges


def expired(existing: Iterable[Partition], cutoff: datetime.datetime) -> list[Partition]:
    """Range partitions whose every row is older than `cutoff`."""
    return [p for p in existing if p.upper is not None and p.upper <= cutoff]


@dataclass(frozen=True)
class Step:
    # "drop" a whole partition, "delete" expired rows, keep "existing" rows;
    # "finish" dropping one that a stopped run left detached
    kind: str
    relation: str  # the table itself, or one of its partitions


def steps(
    table: str,
    existing: Sequence[Partition] | None,
    cutoff: datetime.datetime,
    include_existing: bool,
) -> list[Step]:
    """What expiring `table` takes; `existing` is None for a plain (unpartitioned) table.

    A partition starting at MINVALUE holds rows stored before the upgrade
    (our old migration 002 made it): kept unless `include_existing`, then
    dropped if wholly expired, else thinned like the DEFAULT partition.
    """
    if existing is None:
        return [Step("delete", table)]
    planned = []
    for partition in existing:
        if partition.is_default:
            planned.append(Step("delete", partition.name))
        elif partition.lower is None and not include_existing:
            planned.append(Step("existing", partition.name))
        elif partition.upper is not None and partition.upper <= cutoff:
            planned.append(Step("drop", partition.name))
        elif partition.lower is None:
            planned.append(Step("delete", partition.name))
    return planned


@dataclass
class Totals:
    expired: int = 0  # rows deleted (or, in a survey, that would be)
    kept: int = 0  # expired by age but kept: private addresses, raw messages still pointed at
    existing: int = 0  # stored before the upgrade, kept
    partitions: int = 0  # whole partitions dropped (or that would be)


async def shape(pool: db.Pool, table: str) -> list[Partition] | None:
    found = await db_expiry.partitions(pool, table)
    if found is None:
        return None
    parts = [parse_bound(*row) for row in found]
    return [
        dataclasses.replace(p, is_future=True)
        if p.name == future_name(table) and p.lower is not None and p.upper is None
        else p
        for p in parts
    ]


def top(existing: Sequence[Partition]) -> datetime.datetime | None:
    """The highest upper bound of the range partitions; None if there are none."""
    return max((p.upper for p in existing if p.upper is not None), default=None)


def default_of(existing: Sequence[Partition]) -> str | None:
    return next((p.name for p in existing if p.is_default), None)


def future_of(existing: Sequence[Partition]) -> Partition | None:
    return next((p for p in existing if p.is_future), None)


async def make_ahead(pool: db.Pool, retention_hours: float, now: datetime.datetime) -> None:
    """Create the partitions of the coming hours, on the tables that are partitioned.

    A table with a DEFAULT partition first gets its future partition and
    fence (`install_future`); new ranges are then split off the future
    partition with catalog work only. A fresh table gets its first ranges
    the plain way, its DEFAULT partition being small (SMALL_DEFAULT); so
    does one whose ranges ran out before it had a future partition, if its
    DEFAULT partition is small, else the future partition starts two widths
    from now and the mail received until then stays in DEFAULT. When the
    future partition cannot be made yet (busy), nothing is made this run:
    the ranges made ahead last for hours, and rows past them go to DEFAULT.
    """
    width = partition_width(retention_hours)
    for table in TABLES:
        try:
            await make_ahead_of(pool, table, width, now)
        except db.asyncpg.LockNotAvailableError:
            log.info("[retention] %s is busy: partitions are made at the next run", table)
        except Exception as error:  # the other table, and expiry, are still due
            log.error(
                "[retention] %s: making partitions failed, retried at the next run: %r",
                table,
                error,
            )


async def make_ahead_of(
    pool: db.Pool, table: str, width: datetime.timedelta, now: datetime.datetime
) -> None:
    existing = await shape(pool, table)
    if existing is None:
        return
    default = default_of(existing)
    if default is not None and future_of(existing) is None:
        ceiling = top(existing)
        if ceiling is None or ceiling < now + width:  # a fresh table, or ranges that ran out
            if await db_expiry.relation_size(pool, default) <= SMALL_DEFAULT:
                await create_ranges(pool, table, plan(existing, now, width), default)
                existing = await shape(pool, table) or []
        # Above the mail arriving: the fence must not refuse it.
        bound = max(top(existing) or now, floor_to(now, width) + 2 * width)
        if not await install_future(pool, table, default, existing, bound):
            return
        existing = await shape(pool, table) or []
    future = future_of(existing)
    ranges = plan(existing, now, width)
    if future is None:
        await create_ranges(pool, table, ranges, default)
        return
    assert future.lower is not None
    if ranges and (default is None or await fence(pool, default, future.lower)):
        named = [(partition_name(table, lower), lower, upper) for lower, upper in ranges]
        for name in await db_expiry.split_future(pool, table, default, future.name, named):
            log.debug("[retention] created partition %s", name)


async def create_ranges(
    pool: db.Pool,
    table: str,
    ranges: Sequence[tuple[datetime.datetime, datetime.datetime]],
    default: str | None,
) -> None:
    for lower, upper in ranges:
        name = partition_name(table, lower)
        if await db_expiry.create_partition(pool, table, name, lower, upper, default):
            log.debug("[retention] created partition %s", name)


async def install_future(
    pool: db.Pool, table: str, default: str, existing: Sequence[Partition], bound: datetime.datetime
) -> bool:
    """Give `table` its future partition from `bound` (the top of its ranges,
    or above the mail arriving if they ran out), and its DEFAULT partition the
    fence at `bound`; False if not now.

    The fence is added NOT VALID first (from then on the DEFAULT partition
    refuses rows from `bound` on: none arrive there, `bound` being a width or
    more ahead of the mail arriving), then db_expiry.add_future moves any
    such rows into the future partition, validates the fence and attaches.
    Mail received between the top of the ranges and `bound` (after ranges
    ran out) stays in DEFAULT, and expires from there.
    """
    if any(p.upper is None and not p.is_default for p in existing):
        return False  # a MAXVALUE partition not ours
    name = await db_expiry.add_fence(pool, default, bound)
    try:
        made = await db_expiry.add_future(pool, table, default, future_name(table), bound, name)
    except db.asyncpg.LockNotAvailableError:
        made = False
    if not made:
        await db_expiry.drop_fences(pool, default, [name])
        log.info("[retention] %s: no future partition yet (busy): next run", table)
        return False
    log.debug(
        "[retention] %s: partition %s holds mail past the ranges made; %s is fenced below %s",
        table,
        future_name(table),
        default,
        f"{bound:%Y-%m-%d %H:%M}",
    )
    await keep_only(pool, default, name)
    return True


async def keep_only(pool: db.Pool, default: str, fence_name: str) -> None:
    others = [f.name for f in await db_expiry.fences(pool, default) if f.name != fence_name]
    await db_expiry.drop_fences(pool, default, others)


async def fence(
    pool: db.Pool,
    default: str,
    ceiling: datetime.datetime,
    floor: datetime.datetime | None = None,
) -> bool:
    """Make sure `default` has one validated fence X with floor <= X <= ceiling
    (ranges attached from `ceiling` up then need no scan of it; kept rows
    received before `floor` fit in it); False (logged) if not now.

    A new fence is set at `ceiling`, as far up as it can go, so that this
    happens about once per retention period: a VALIDATE, which scans the
    DEFAULT partition without holding anyone up.
    """
    found = await db_expiry.fences(pool, default)
    good = [
        f for f in found if f.valid and f.bound <= ceiling and (floor is None or f.bound >= floor)
    ]
    if good:
        name = max(good, key=lambda f: f.bound).name
    else:
        name = await db_expiry.add_fence(pool, default, ceiling)
        if not await db_expiry.validate_fence(pool, default, name):
            await db_expiry.drop_fences(pool, default, [name])
            log.warning(
                "[retention] %s holds rows received after %s: not fenced, partitions "
                "are not made or dropped until they are gone",
                default,
                f"{ceiling:%Y-%m-%d %H:%M}",
            )
            return False
    await keep_only(pool, default, name)
    return True


async def make_room(pool: db.Pool, existing: Sequence[Partition], floor: datetime.datetime) -> bool:
    """Can rows received before `floor` go into the DEFAULT partition (its fence
    must let them in)? Moves the fence up if needed; False if not now."""
    default = default_of(existing)
    if default is None:
        return True
    blocking = [f.name for f in await db_expiry.fences(pool, default) if f.bound < floor]
    if not blocking:
        return True
    future = future_of(existing)
    if future is None:  # a fence without its future partition is of no use: gone
        await db_expiry.drop_fences(pool, default, blocking)
        return True
    assert future.lower is not None
    return await fence(pool, default, future.lower, floor)


async def survey(
    pool: db.Pool, cutoff: datetime.datetime, private: frozenset[str], include_existing: bool
) -> dict[str, Totals]:
    """What expiring now would delete and keep, per table; changes nothing."""
    found = {}
    for table in TABLES:
        totals = found[table] = Totals()
        for step in steps(table, await shape(pool, table), cutoff, include_existing):
            if step.kind == "existing":
                totals.existing += await db_expiry.count_rows(pool, step.relation)
                continue
            counts = await db_expiry.count_expired(
                pool, table, step.relation, cutoff, private, include_existing
            )
            totals.expired += counts.expired
            totals.kept += counts.kept
            totals.existing += counts.existing
            totals.partitions += step.kind == "drop"
    return found


async def expire(
    pool: db.Pool, cutoff: datetime.datetime, private: frozenset[str], include_existing: bool
) -> dict[str, Totals]:
    """Delete what `survey` counts. emails first: raw messages that an emails row
    still points at are kept, and none are dropped in a run where emails was
    busy or failed. A step that fails is logged; the next ones still run.

    An expired partition is detached (catalog work), then its kept rows are
    copied back from the detached table, which is dropped (`finish`). A
    table a stopped run left detached is finished first.
    """
    done = {}
    emails_busy = False
    for table in TABLES:
        totals = done[table] = Totals()
        existing = await shape(pool, table)
        left = [] if existing is None else await db_expiry.expiring(pool, table)
        for step in [Step("finish", name) for name in left] + steps(
            table, existing, cutoff, include_existing
        ):
            try:
                if step.kind in ("drop", "finish") and not (
                    table == "raw_messages" and emails_busy
                ):
                    assert existing is not None
                    if not await drop(pool, table, existing, step, private, totals):
                        emails_busy |= table == "emails"
                elif step.kind == "delete":
                    while deleted := await db_expiry.delete_expired(
                        pool, table, step.relation, cutoff, private, DEFAULT_BATCH, include_existing
                    ):
                        totals.expired += deleted
                        await asyncio.sleep(0.01)  # let writes in between
            except db.asyncpg.LockNotAvailableError:
                log.info("[retention] %s is busy: left for the next run", step.relation)
                emails_busy |= table == "emails"
            except Exception as error:  # the other partitions are still due
                log.error(
                    "[retention] %s: expiring it failed, retried at the next run: %r",
                    step.relation,
                    error,
                )
                emails_busy |= table == "emails"
    return done


async def drop(
    pool: db.Pool,
    table: str,
    existing: Sequence[Partition],
    step: Step,
    private: frozenset[str],
    totals: Totals,
) -> bool:
    """Drop an expired partition ("drop": still attached; "finish": left
    detached by a run that stopped), keeping its kept rows; False if busy."""
    if step.kind == "finish":
        newest = await db_expiry.newest(pool, step.relation)
        floor = None if newest is None else newest + datetime.timedelta(microseconds=1)
    else:
        floor = next(p.upper for p in existing if p.name == step.relation)
    if floor is not None and not await make_room(pool, existing, floor):
        return False
    if step.kind == "drop" and not await db_expiry.detach_expiring(pool, table, step.relation):
        return True  # another worker dropped it
    return await finish(pool, table, step.relation, private, totals)


async def finish(
    pool: db.Pool, table: str, name: str, private: frozenset[str], totals: Totals
) -> bool:
    """Copy back the kept rows of `name`, detached from `table`, and drop it;
    False if the table was busy (the next run finishes it) or the copy failed.

    A copy that fails (an operator's trigger or column refuses the rows) is
    not retried in this run: `name` is attached again, so its mail stays in
    sight, and the next run drops it again if the cause is gone.
    """
    try:
        done = await db_expiry.finish_expiring(pool, table, name, private)
    except db.asyncpg.LockNotAvailableError:
        log.warning(
            "[retention] %s is busy: the kept rows of %s (detached) are back at the next run",
            table,
            name,
        )
        return False
    except db.asyncpg.PostgresError as error:
        try:
            outcome = await reattach(pool, table, name)
        except db.asyncpg.PostgresError as failed:
            outcome = f"left detached (attaching failed: {failed!r}); the next run tries again"
        log.error(
            "[retention] could not copy the kept rows of %s back into %s (%r): %s",
            name,
            table,
            error,
            outcome,
        )
        return False
    if done is None:
        return True  # another worker finished it
    dropped, kept = done
    log.info("[retention] dropped partition %s (%d rows, %d kept)", name, dropped, kept)
    totals.expired += dropped
    totals.kept += kept
    totals.partitions += 1
    return True


async def reattach(pool: db.Pool, table: str, name: str) -> str:
    """Attach `name` (its copy back failed) again with the bound its mark
    records, into the partitions `table` has now; what became of it, for the log."""
    bound = await db_expiry.recorded_bound(pool, table, name)
    if bound is None:
        return "left detached (no bound recorded); the next run copies again"
    was = parse_bound(name, bound)
    default = default_of(await shape(pool, table) or [])
    await db_expiry.reattach(pool, table, name, bound, was.lower, was.upper, default)
    return "attached again, its mail in sight; the next run drops it again"


def describe(found: dict[str, Totals], cutoff: datetime.datetime, dry_run: bool) -> str:
    """One line on what expiring did, or (a survey) would do and would keep."""
    emails, raw = found["emails"], found["raw_messages"]
    text = (
        f"{'would delete' if dry_run else 'deleted'} {emails.expired} emails rows and "
        f"{raw.expired} raw messages received before {cutoff:%Y-%m-%d %H:%M} UTC "
        f"({emails.partitions + raw.partitions} whole partitions)"
    )
    if not dry_run:
        return text
    text += (
        f"; kept {emails.kept} emails rows of private addresses, {raw.kept} raw "
        "messages their rows point at"
    )
    existing = emails.existing + raw.existing
    if existing:
        text += (
            f", and {existing} rows stored before the upgrade "
            "(only `python -m app retention --include-existing` deletes those)"
        )
    return text


@contextlib.asynccontextmanager
async def alone(pool: db.Pool, wait: bool) -> AsyncIterator[bool]:
    """The block as the only retention run (db_expiry.RUN_LOCK), after undoing
    what a stopped run left half done; False if another run is under way and
    `wait` is false (nothing done).

    A stopped run can leave a fence NOT VALID (added, not validated yet): it
    refuses rows from its bound on, and nothing else removes it unless a
    later run happens to move the fence. Detached partitions a stopped run
    left are finished by `expire`.
    """
    async with db_expiry.run_lock(pool, wait) as mine:
        if mine:
            for table in TABLES:
                try:
                    await tidy(pool, table)
                except db.asyncpg.LockNotAvailableError:
                    log.info("[retention] %s is busy: its fences are tidied next run", table)
                except Exception as error:  # the run's other steps are still due
                    log.error("[retention] %s: tidying its fences failed: %r", table, error)
        yield mine


async def tidy(pool: db.Pool, table: str) -> None:
    default = default_of(await shape(pool, table) or [])
    if default is None:
        return
    for name in await db_expiry.drop_unvalidated_fences(pool, default):
        log.warning(
            "[retention] %s: dropped %s, a fence a stopped run left NOT VALID", default, name
        )


async def maintain(
    pool: db.Pool,
    retention_hours: float,
    private: frozenset[str] | None,
    now: datetime.datetime | None = None,
    expire_mail: bool = True,
) -> dict[str, int]:
    """The periodic run: partitions ahead, then expiry; return the rows expired per table.

    One at a time (`alone`): a worker whose turn it is not skips it.
    Creation comes first and runs even when mail is kept forever; if it
    fails (logged) expiry still runs. Expiry waits for the private_email
    list (`private` None: not loaded yet), and the first run on a database
    only logs what it would delete.
    """
    async with alone(pool, wait=False) as mine:
        if not mine:
            log.debug("[retention] another run is under way: this one is skipped")
            return dict.fromkeys(TABLES, 0)
        return await periodic(
            pool, retention_hours, private, now or datetime.datetime.now(UTC), expire_mail
        )


async def periodic(
    pool: db.Pool,
    retention_hours: float,
    private: frozenset[str] | None,
    now: datetime.datetime,
    expire_mail: bool,
) -> dict[str, int]:
    """`maintain`, under the run lock."""
    await make_ahead(pool, retention_hours, now)
    if retention_hours <= 0 or not expire_mail:
        return dict.fromkeys(TABLES, 0)
    if private is None:
        log.debug("[retention] the private_email list is not loaded yet: nothing expires")
        return dict.fromkeys(TABLES, 0)
    cutoff = now - datetime.timedelta(hours=retention_hours)
    if not await db_expiry.retention_started(pool):
        report = describe(await survey(pool, cutoff, private, False), cutoff, dry_run=True)
        log.warning(
            "[retention] first run on this database, nothing deleted: it %s. "
            "Runs from the next one on delete.",
            report,
        )
        await db_expiry.mark_retention_started(pool, report)
        return dict.fromkeys(TABLES, 0)
    done = await expire(pool, cutoff, private, include_existing=False)
    if any(t.expired for t in done.values()):
        log.info(
            "[retention] expired %d emails rows and %d raw messages older than %.0f hours",
            done["emails"].expired,
            done["raw_messages"].expired,
            retention_hours,
        )
    return {table: totals.expired for table, totals in done.items()}
