"""Retention's partitions made ahead, and the DEFAULT partition's fence.

`make_ahead` gives each partitioned mail table the ranges of the coming
hours: split off its future partition (catalog work only), or, on a fresh
table, made the plain way. `fence` and `make_room` keep the DEFAULT
partition's fence (a validated CHECK (received_at < X)) where new ranges
attach above it without a scan and kept rows still fit below it. `shape`
reads a table's partitions. The SQL is in db_partitions and db_fences.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Sequence

from . import db, db_fences, db_partitions
from .retention_plan import (
    TABLES,
    Partition,
    default_of,
    floor_to,
    future_name,
    future_of,
    parse_bound,
    partition_name,
    partition_width,
    plan,
    top,
)

log = logging.getLogger("app.retention")

# Below this size (bytes) an ATTACH's scan of the DEFAULT partition takes milliseconds:
# missing ranges (a fresh table, or ranges that ran out) are then made the plain way.
SMALL_DEFAULT = 16 * 2**20


async def shape(pool: db.Pool, table: str) -> list[Partition] | None:
    found = await db_partitions.partitions(pool, table)
    if found is None:
        return None
    parts = [parse_bound(*row) for row in found]
    return [
        dataclasses.replace(p, is_future=True)
        if p.name == future_name(table) and p.lower is not None and p.upper is None
        else p
        for p in parts
    ]


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
            if await db_partitions.relation_size(pool, default) <= SMALL_DEFAULT:
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
        for name in await db_partitions.split_future(pool, table, default, future.name, named):
            log.debug("[retention] created partition %s", name)


async def create_ranges(
    pool: db.Pool,
    table: str,
    ranges: Sequence[tuple[datetime.datetime, datetime.datetime]],
    default: str | None,
) -> None:
    for lower, upper in ranges:
        name = partition_name(table, lower)
        if await db_partitions.create_partition(pool, table, name, lower, upper, default):
            log.debug("[retention] created partition %s", name)


async def install_future(
    pool: db.Pool, table: str, default: str, existing: Sequence[Partition], bound: datetime.datetime
) -> bool:
    """Give `table` its future partition from `bound` (the top of its ranges,
    or above the mail arriving if they ran out), and its DEFAULT partition the
    fence at `bound`; False if not now.

    The fence is added NOT VALID first (from then on the DEFAULT partition
    refuses rows from `bound` on: none arrive there, `bound` being a width or
    more ahead of the mail arriving), then db_partitions.add_future moves any
    such rows into the future partition, validates the fence and attaches.
    Mail received between the top of the ranges and `bound` (after ranges
    ran out) stays in DEFAULT, and expires from there.
    """
    if any(p.upper is None and not p.is_default for p in existing):
        return False  # a MAXVALUE partition not ours
    name = await db_fences.add_fence(pool, default, bound)
    try:
        made = await db_partitions.add_future(pool, table, default, future_name(table), bound, name)
    except db.asyncpg.LockNotAvailableError:
        made = False
    if not made:
        await db_fences.drop_fences(pool, default, [name])
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
    others = [f.name for f in await db_fences.fences(pool, default) if f.name != fence_name]
    await db_fences.drop_fences(pool, default, others)


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
    found = await db_fences.fences(pool, default)
    good = [
        f for f in found if f.valid and f.bound <= ceiling and (floor is None or f.bound >= floor)
    ]
    if good:
        name = max(good, key=lambda f: f.bound).name
    else:
        name = await db_fences.add_fence(pool, default, ceiling)
        if not await db_fences.validate_fence(pool, default, name):
            await db_fences.drop_fences(pool, default, [name])
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
    blocking = [f.name for f in await db_fences.fences(pool, default) if f.bound < floor]
    if not blocking:
        return True
    future = future_of(existing)
    if future is None:  # a fence without its future partition is of no use: gone
        await db_fences.drop_fences(pool, default, blocking)
        return True
    assert future.lower is not None
    return await fence(pool, default, future.lower, floor)
