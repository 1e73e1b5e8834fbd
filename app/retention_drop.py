"""Retention's drop of one expired partition, its kept rows saved.

The partition is detached (catalog work), its kept rows (private
addresses, raw messages still pointed at) are copied back from the detached
table into the DEFAULT partition, and it is dropped (`finish`). If the copy
fails, the partition is attached again (`reattach`), its mail in sight, and
a later run drops it again. The SQL is in db_expiry.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence

from . import db, db_expiry
from .retention_partitions import make_room, shape
from .retention_plan import Partition, Step, Totals, default_of, parse_bound

log = logging.getLogger("app.retention")


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
