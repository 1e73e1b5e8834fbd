"""Retention: partitions made ahead of time, old mail expired, some mail never.

Both shapes of the mail tables work. Partitioned ones (every fresh install,
and `raw_messages` always) expire by dropping whole partitions: no
row-by-row delete, no dead tuples. A plain `emails` (a Cybertemp operator's
table, kept as it was) loses its expired rows in small batches, each a
short transaction. Rows outside every range partition (the DEFAULT one:
spool replays of old mail) are deleted in small batches too.

No step holds a lock that readers or the writer wait for longer than a
catalog change takes (db_retention_locks says how): a busy table means
"next run", never a queue of blocked reads and inserts. The partitions of
a table:

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

The planning is pure (retention_plan, and `describe` here); partitions are
made ahead and the DEFAULT partition fenced by retention_partitions; an
expired partition is dropped by retention_drop. This module runs it all:
`maintain` (the periodic run), `survey`, `expire` (also the `retention`
command's), one run at a time (`alone`). The SQL is in db_partitions,
db_fences and db_expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import AsyncIterator

from . import db, db_expiry, db_fences, db_retention_locks
from .retention_drop import drop
from .retention_partitions import make_ahead, shape
from .retention_plan import TABLES, UTC, Step, Totals, default_of, steps

log = logging.getLogger("app.retention")

DEFAULT_BATCH = 5000  # rows of a DEFAULT partition deleted per short transaction


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
    """The block as the only retention run (db_retention_locks.RUN_LOCK),
    after undoing what a stopped run left half done; False if another run is
    under way and `wait` is false (nothing done).

    A stopped run can leave a fence NOT VALID (added, not validated yet): it
    refuses rows from its bound on, and nothing else removes it unless a
    later run happens to move the fence. Detached partitions a stopped run
    left are finished by `expire`.
    """
    async with db_retention_locks.run_lock(pool, wait) as mine:
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
    for name in await db_fences.drop_unvalidated_fences(pool, default):
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
