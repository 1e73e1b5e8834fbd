"""Mailpit's tags of a mailbox (a mailbox's tags are the names on its rows):
counts, replacing a message's tags, renaming or removing one tag everywhere.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from .queries_search import TAGS


async def tag_counts(pool: asyncpg.Pool, address: str) -> dict[str, int]:
    """Each tag of `address` with how many of its messages carry it."""
    rows = await pool.fetch(
        f"SELECT t, count(*) FROM emails e, unnest({TAGS}) t WHERE e.mailbox_owner = $1 GROUP BY t",
        address,
    )
    return {r[0]: int(r[1]) for r in rows}


async def set_tags(
    pool: asyncpg.Pool, address: str, ids: Sequence[uuid.UUID], tags: Sequence[str]
) -> int:
    """Replace the tags of `ids` of `address` (none: NULL); rows changed."""
    status = await pool.execute(
        "UPDATE emails e SET tags = $3 WHERE e.mailbox_owner = $1 AND e.id = ANY($2)",
        address,
        list(ids),
        list(tags) or None,
    )
    return int(status.rsplit(" ", 1)[1])


async def replace_tag(pool: asyncpg.Pool, address: str, old: str, new: str | None) -> int:
    """On every message of `address`: the tag `old` (any case) becomes `new`,
    or goes (None); rows changed."""
    status = await pool.execute(
        "UPDATE emails e SET tags = nullif(ARRAY(SELECT n FROM unnest(e.tags) WITH ORDINALITY "
        "AS x(t, i), LATERAL (SELECT CASE WHEN lower(t) = lower($2) THEN $3 ELSE t END) AS y(n) "
        "WHERE n IS NOT NULL ORDER BY i), '{}') "
        "WHERE e.mailbox_owner = $1 AND lower($2) = ANY(SELECT lower(t) FROM unnest(e.tags) t)",
        address,
        old,
        new,
    )
    return int(status.rsplit(" ", 1)[1])
