"""Retention's SQL for the DEFAULT partition's fence: a CHECK (received_at < X)
of ours, added NOT VALID (a catalog change), validated (a scan nobody waits
for), listed, and dropped. A validated fence lets ranges above X attach
without a scan of the DEFAULT partition (db_retention_locks says why).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence

from . import db
from .db_retention_locks import LONG, PATIENT_LOCK_TIMEOUT, ddl, quote_time

q = db.quote_ident

# The fence of a DEFAULT partition: CHECK (received_at < bound), named after its bound.
FENCE_PREFIX = "retention_received_before_"
FENCE_FORMAT = "%Y%m%d_%H%M%S_%f"


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
