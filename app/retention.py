"""Partitions of the mail tables: created ahead of time, dropped when expired.

`emails` and `raw_messages` are range-partitioned by `received_at` (migration
002) with identical bounds, so a message and its rows expire together.
Expiring mail is `DROP TABLE` of whole partitions: no row-by-row delete, no
dead tuples, and each lock is held for milliseconds under a short
`lock_timeout` (a busy table means "try at the next run", never a queue of
blocked inserts). Rows that fell outside every partition (the DEFAULT one:
spool replays after a long outage, clock skew) are deleted in small batches.

The planning here is pure (`partition_width`, `plan`, `parse_bound`); the SQL
is in `db`.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from . import db

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


async def maintain(
    pool: db.Pool,
    retention_hours: float,
    now: datetime.datetime | None = None,
    expire: bool = True,
) -> dict[str, int]:
    """Create the partitions ahead, then expire old mail; return the rows expired per table.

    Creation comes first and runs even when mail is kept forever.
    """
    now = now or datetime.datetime.now(UTC)
    width = partition_width(retention_hours)
    cutoff = now - datetime.timedelta(hours=retention_hours)
    gone = dict.fromkeys(TABLES, 0)
    # emails first: a stored email row always finds its raw message.
    for table in TABLES:
        existing = [parse_bound(*row) for row in await db.partitions(pool, table)]
        default = next((p.name for p in existing if p.is_default), None)
        for lower, upper in plan(existing, now, width):
            name = partition_name(table, lower)
            if await db.create_partition(pool, table, name, lower, upper, default):
                log.info("[retention] created partition %s", name)
        if retention_hours <= 0 or not expire:
            continue
        for partition in expired(existing, cutoff):
            rows = await db.drop_partition(pool, partition.name)
            log.info("[retention] dropped partition %s (%d rows)", partition.name, rows)
            gone[table] += rows
        while default and (deleted := await db.delete_older(pool, default, cutoff, DEFAULT_BATCH)):
            gone[table] += deleted
            await asyncio.sleep(0.01)  # let writes in between
    if any(gone.values()):
        log.info(
            "[retention] expired %d emails rows and %d raw messages older than %.0f hours",
            gone["emails"],
            gone["raw_messages"],
            retention_hours,
        )
    return gone
