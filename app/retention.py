"""Retention: partitions made ahead of time, old mail expired, some mail never.

Both shapes of the mail tables work. Partitioned ones (every fresh install,
and `raw_messages` always) expire by `DROP TABLE` of whole partitions: no
row-by-row delete, no dead tuples, each lock held for milliseconds under a
short `lock_timeout` (a busy table means "next run", never a queue of
blocked inserts). A plain `emails` (a Cybertemp operator's table, kept as it
was) loses its expired rows in small batches, each a short transaction.
Rows outside every partition (the DEFAULT one: spool replays after a long
outage, clock skew) are deleted in small batches too.

Never expired by the periodic run:
- rows stored before the upgrade (an empty `received_at` in a Cybertemp
  table; the `*_legacy` partitions of our old migration 002): only
  `python -m app retention --include-existing` deletes them;
- mail of `private_email` addresses (and the raw messages it points at):
  before a partition is dropped those rows move to the DEFAULT partition.
  Until the private list is loaded, nothing expires.

The first run on a database only logs what it would delete and records
that it ran (table retention_state); later runs delete.

The planning here is pure (`partition_width`, `plan`, `parse_bound`,
`steps`, `describe`); the SQL is in `db_expiry`.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from . import db, db_expiry

log = logging.getLogger("app.retention")

UTC = datetime.UTC
HOUR = datetime.timedelta(hours=1)
# Widths that divide a day, so partition bounds fall on round hours.
WIDTHS_HOURS = (1, 2, 3, 4, 6, 8, 12, 24)
TABLES = ("emails", "raw_messages")
DEFAULT_BATCH = 5000  # rows of a DEFAULT partition deleted per short transaction


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


def plan(
    existing: Sequence[Partition], now: datetime.datetime, width: datetime.timedelta
) -> list[tuple[datetime.datetime, datetime.datetime]]:
    """The (lower, upper) ranges to create so that partitions cover now + ahead.

    They continue from the highest existing bound, or from the current
    width-aligned slot after a gap (older mail then goes to DEFAULT).
    The first range may be short, to come back onto width-aligned bounds.
    """
    uppers = [p.upper for p in existing if p.upper is not None and not p.is_default]
    if any(p.upper is None and not p.is_default for p in existing):
        return []  # a MAXVALUE partition already covers the future
    start = max([*uppers, floor_to(now, width)])
    end = now + ahead(width)
    ranges = []
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
    kind: str  # "drop" a whole partition, "delete" expired rows, keep "existing" rows
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
    return None if found is None else [parse_bound(*row) for row in found]


async def make_ahead(pool: db.Pool, retention_hours: float, now: datetime.datetime) -> None:
    """Create the partitions of the coming hours, on the tables that are partitioned."""
    width = partition_width(retention_hours)
    for table in TABLES:
        existing = await shape(pool, table)
        if existing is None:
            continue
        default = next((p.name for p in existing if p.is_default), None)
        for lower, upper in plan(existing, now, width):
            name = partition_name(table, lower)
            if await db_expiry.create_partition(pool, table, name, lower, upper, default):
                log.info("[retention] created partition %s", name)


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
    still points at are kept, and none are dropped in a run where emails was busy."""
    done = {}
    emails_busy = False
    for table in TABLES:
        totals = done[table] = Totals()
        for step in steps(table, await shape(pool, table), cutoff, include_existing):
            try:
                if step.kind == "drop" and not (table == "raw_messages" and emails_busy):
                    dropped, kept = await db_expiry.drop_partition(
                        pool, table, step.relation, private
                    )
                    log.info(
                        "[retention] dropped partition %s (%d rows, %d kept)",
                        step.relation,
                        dropped,
                        kept,
                    )
                    totals.expired += dropped
                    totals.kept += kept
                    totals.partitions += 1
                elif step.kind == "delete":
                    while deleted := await db_expiry.delete_expired(
                        pool, table, step.relation, cutoff, private, DEFAULT_BATCH, include_existing
                    ):
                        totals.expired += deleted
                        await asyncio.sleep(0.01)  # let writes in between
            except db.asyncpg.LockNotAvailableError:
                log.info("[retention] %s is busy: left for the next run", step.relation)
                emails_busy |= table == "emails"
    return done


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


async def maintain(
    pool: db.Pool,
    retention_hours: float,
    private: frozenset[str] | None,
    now: datetime.datetime | None = None,
    expire_mail: bool = True,
) -> dict[str, int]:
    """The periodic run: partitions ahead, then expiry; return the rows expired per table.

    Creation comes first and runs even when mail is kept forever. Expiry
    waits for the private_email list (`private` None: not loaded yet), and
    the first run on a database only logs what it would delete.
    """
    now = now or datetime.datetime.now(UTC)
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
