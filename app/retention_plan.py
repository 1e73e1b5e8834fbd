"""Retention's planning, pure: the partitions a table has and needs, and the
steps expiring it takes.

`partition_width` and `plan` say which ranges to make ahead, `parse_bound`
reads a partition's bound as PostgreSQL prints it, `steps` says what
expiring a table takes (drop a partition, delete rows, keep pre-upgrade
ones), and Totals counts what a run did. No I/O: retention_partitions,
retention_drop and retention act on what these return.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

UTC = datetime.UTC
HOUR = datetime.timedelta(hours=1)
# Widths that divide a day, so partition bounds fall on round hours.
WIDTHS_HOURS = (1, 2, 3, 4, 6, 8, 12, 24)
TABLES = ("emails", "raw_messages")


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


def top(existing: Sequence[Partition]) -> datetime.datetime | None:
    """The highest upper bound of the range partitions; None if there are none."""
    return max((p.upper for p in existing if p.upper is not None), default=None)


def default_of(existing: Sequence[Partition]) -> str | None:
    return next((p.name for p in existing if p.is_default), None)


def future_of(existing: Sequence[Partition]) -> Partition | None:
    return next((p for p in existing if p.is_future), None)
