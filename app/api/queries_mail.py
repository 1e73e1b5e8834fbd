"""A mailbox's messages: pages and searches of them, one message, the raw
bytes, seen flags, deletes, sizes and counts, and the rows a stream catches
up on. Every query is keyed by `emails.mailbox_owner`, or by id.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from .queries import Record
from .queries_search import SEEN, TAGS, Term, search_condition, selection

# Columns of a list row: `preview` is enough text for the intro/snippet, so a
# page of 30 never carries whole bodies.
LIST_COLUMNS = f"""
    e.id, e.mailbox_owner, e.subject, e.from_addr, e.header_from, e.header_to, e.to_addrs,
    e.flags, e.size, e.received_at, e.created_at, e.message_id, e.raw_id,
    CASE jsonb_typeof(e.attachments) WHEN 'array' THEN jsonb_array_length(e.attachments)
        ELSE 0 END AS attachment_count,
    CASE WHEN e.body <> '' THEN left(e.body, 600) ELSE left(coalesce(e.html, ''), 6000) END
        AS preview,
    (e.body = '') AS preview_is_html, {TAGS} AS tags,
    e.junk, e.verdicts -> 'reasons' AS junk_reasons, e.codes, e.verify_link
"""
FULL_COLUMNS = LIST_COLUMNS + ", e.body, e.html"
ORDER = "ORDER BY e.received_at DESC NULLS LAST, e.created_at DESC, e.id"


async def used_bytes(pool: asyncpg.Pool, address: str) -> int:
    return int(
        await pool.fetchval(
            "SELECT coalesce(sum(size), 0) FROM emails WHERE mailbox_owner = $1", address
        )
    )


async def page(
    pool: asyncpg.Pool, address: str, offset: int, limit: int
) -> tuple[list[Record], int, int]:
    """(rows newest first, total, unread) of one mailbox."""
    rows, counts = await listing(pool, address, (), offset, limit)
    return rows, counts["total"], counts["unread"]


async def listing(
    pool: asyncpg.Pool, address: str, terms: Sequence[Term], offset: int, limit: int
) -> tuple[list[Record], dict[str, Any]]:
    """(rows newest first that `terms` match, counts): the counts are the
    mailbox's total, unread and tags, and the matching and matching_unread."""
    matching, args = search_condition(terms, 2)
    where = f"e.mailbox_owner = $1 AND {matching}"
    args = [address, *args]
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT {LIST_COLUMNS} FROM emails e WHERE {where} {ORDER} "
            f"LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}",
            *args,
            limit,
            offset,
        )
        counts = await conn.fetchrow(
            f"SELECT count(*) AS total, count(*) FILTER (WHERE NOT {SEEN}) AS unread, "
            f"count(*) FILTER (WHERE {matching}) AS matching, "
            f"count(*) FILTER (WHERE {matching} AND NOT {SEEN}) AS matching_unread, "
            f"(SELECT coalesce(array_agg(DISTINCT t), '{{}}') FROM emails e, unnest({TAGS}) t "
            "WHERE e.mailbox_owner = $1) AS tags FROM emails e WHERE e.mailbox_owner = $1",
            *args,
        )
    assert counts is not None
    return list(rows), dict(counts)


async def message(pool: asyncpg.Pool, address: str, message_id: uuid.UUID) -> Record | None:
    """One message of `address` with its whole text and HTML, or None."""
    return await pool.fetchrow(
        f"SELECT {FULL_COLUMNS} FROM emails e WHERE e.id = $1 AND e.mailbox_owner = $2",
        message_id,
        address,
    )


async def latest(pool: asyncpg.Pool, address: str, terms: Sequence[Term] = ()) -> Record | None:
    """The newest message of `address` (that `terms` match), or None."""
    where, args = selection(address, terms=terms)
    return await pool.fetchrow(
        f"SELECT {FULL_COLUMNS} FROM emails e WHERE {where} {ORDER} LIMIT 1", *args
    )


async def messages_by_ids(pool: asyncpg.Pool, ids: Sequence[uuid.UUID]) -> list[Record]:
    """List rows of `ids` (the events of one commit), any mailbox."""
    return list(
        await pool.fetch(f"SELECT {LIST_COLUMNS} FROM emails e WHERE e.id = ANY($1)", list(ids))
    )


async def raw(pool: asyncpg.Pool, raw_id: uuid.UUID) -> bytes | None:
    value = await pool.fetchval("SELECT raw FROM raw_messages WHERE id = $1", raw_id)
    return None if value is None else bytes(value)


async def set_seen(
    pool: asyncpg.Pool,
    address: str,
    ids: Sequence[uuid.UUID] | None,
    seen: bool,
    terms: Sequence[Term] = (),
) -> int:
    """Add or remove '\\Seen' on `ids` of `address` (None: all its mail), only
    those `terms` match; rows changed."""
    flags = (
        "array_append(array_remove(coalesce(flags, '{}'), '\\Seen'), '\\Seen')"
        if seen
        else "array_remove(coalesce(flags, '{}'), '\\Seen')"
    )
    where, args = selection(address, ids, terms)
    changed = f"NOT {SEEN}" if seen else SEEN
    status = await pool.execute(
        f"UPDATE emails e SET flags = {flags} WHERE {where} AND {changed}", *args
    )
    return int(status.rsplit(" ", 1)[1])


async def delete_mail(
    pool: asyncpg.Pool,
    address: str,
    ids: Sequence[uuid.UUID] | None,
    terms: Sequence[Term] = (),
) -> int:
    """Delete `ids` of `address` (None: all its mail; with `terms`: those they
    match) and raw messages no other row points at, in one transaction; how
    many emails rows went."""
    async with pool.acquire() as conn, conn.transaction():
        return await remove_mail(conn, address, ids, terms)


async def remove_mail(
    conn: asyncpg.Connection,
    address: str,
    ids: Sequence[uuid.UUID] | None,
    terms: Sequence[Term] = (),
) -> int:
    """delete_mail's work on `conn`, inside the caller's transaction (an
    account's delete takes its mail in the same one)."""
    where, args = selection(address, ids, terms)
    # Lock the raw messages first: two deletes of the two recipients of one
    # message then take turns, and the second sees that no row is left.
    raw_ids = [
        r[0]
        for r in await conn.fetch(
            "SELECT id FROM raw_messages WHERE id IN "
            f"(SELECT e.raw_id FROM emails e WHERE {where} AND e.raw_id IS NOT NULL) FOR UPDATE",
            *args,
        )
    ]
    status = await conn.execute(f"DELETE FROM emails e WHERE {where}", *args)
    if raw_ids:
        await conn.execute(
            "DELETE FROM raw_messages r WHERE r.id = ANY($1) "
            "AND NOT EXISTS (SELECT 1 FROM emails e WHERE e.raw_id = r.id)",
            raw_ids,
        )
    return int(status.rsplit(" ", 1)[1])


async def mailbox_stats(pool: asyncpg.Pool, address: str) -> Record:
    """total, unread and size (bytes) of `address`'s mail."""
    found = await pool.fetchrow(
        f"SELECT count(*) AS total, count(*) FILTER (WHERE NOT {SEEN}) AS unread, "
        "coalesce(sum(e.size), 0) AS size FROM emails e WHERE e.mailbox_owner = $1",
        address,
    )
    assert found is not None
    return found


async def written_since(
    pool: asyncpg.Pool, addresses: Sequence[str], since: datetime.datetime
) -> list[Record]:
    """List rows of `addresses` written after `since` (database time), in the
    order they were written (stream catch-up).

    `created_at` is the writing transaction's start (its default, now()):
    the writer's batch is one statement, so that is when the statement began,
    however long before the message arrived (received_at) or how long it
    waited in the writer or the spool. The index on (mailbox_owner,
    received_at) finds each address's rows; a catch-up is rare (after a lost
    LISTEN connection) and mailboxes are small.
    """
    return list(
        await pool.fetch(
            f"SELECT {LIST_COLUMNS} FROM emails e WHERE e.mailbox_owner = ANY($1) "
            "AND e.created_at > $2 ORDER BY e.created_at, e.received_at",
            list(addresses),
            since,
        )
    )
