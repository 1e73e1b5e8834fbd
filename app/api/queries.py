"""The read side's only SQL: its pool, accounts, mail by address, deletes, catch-up.

Every mail query is keyed by `emails.mailbox_owner` (the recipient, as the
writer stores it) and answered from the `(mailbox_owner, received_at)` index,
or by id (the primary key). Nothing here changes a table's structure; the
one table of ours is made by sql/migrations/010_api.sql (and 011). `domains` and
`domains` is read as a Cybertemp database has it: `active` and `id` may be
missing (`Schema` says which exist). `private_email` is not read here: the
API reads it as the service does (private.py).
"""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from collections.abc import Sequence
from typing import Any, TypeAlias

import asyncpg

from .. import db_schema

Record: TypeAlias = asyncpg.Record
# What a query may raise when the database is unreachable or failed it.
DATABASE_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)
# The account functions also serve the command line, on a plain connection.
Executor: TypeAlias = asyncpg.Pool | asyncpg.Connection

# Columns of a list row: `preview` is enough text for the intro/snippet, so a
# page of 30 never carries whole bodies.
LIST_COLUMNS = """
    e.id, e.mailbox_owner, e.subject, e.from_addr, e.header_from, e.header_to, e.to_addrs,
    e.flags, e.size, e.received_at, e.created_at, e.message_id, e.attachments, e.raw_id,
    CASE WHEN e.body <> '' THEN left(e.body, 600) ELSE left(coalesce(e.html, ''), 6000) END
        AS preview,
    (e.body = '') AS preview_is_html
"""
FULL_COLUMNS = LIST_COLUMNS + ", e.body, e.html"
ORDER = "ORDER BY e.received_at DESC NULLS LAST, e.created_at DESC, e.id"


async def create_pool(url: str, max_size: int) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        url, min_size=1, max_size=max_size, command_timeout=30, timeout=5
    )
    assert pool is not None
    return pool


async def install(conn: asyncpg.Connection) -> int:
    """Install or upgrade the schema (ours are migrations 010 and 011); the version.
    No DDL when it is current: a role without DDL privileges starts fine."""
    return await db_schema.install_schema(conn)


@dataclasses.dataclass(frozen=True)
class Schema:
    """Optional columns of tables a Cybertemp database may have without them."""

    domains_active: bool
    domains_id: bool
    domains_created_at: bool  # a time (migration 060 adds it where there is none)


TIMES = ("timestamp with time zone", "timestamp without time zone", "date")
# When migration 060 ran: a domain older than it shows this (the latest it can have been added).
UPGRADE_TIME = "(SELECT applied_at FROM schema_migrations WHERE version = 60)"


async def schema(pool: asyncpg.Pool) -> Schema:
    rows = await pool.fetch(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'domains' AND table_schema = current_schema()"
    )
    types = {r[0]: r[1] for r in rows}
    return Schema(
        domains_active="active" in types,
        domains_id="id" in types,
        domains_created_at=types.get("created_at") in TIMES,
    )


async def domains(pool: asyncpg.Pool, shape: Schema) -> list[dict[str, Any]]:
    """Every domains row as {domain, active, id (text or None), created_at}, in domain order."""
    active = "active" if shape.domains_active else "true"
    row_id = "id::text" if shape.domains_id else "NULL::text"
    created = "created_at::timestamptz" if shape.domains_created_at else "NULL::timestamptz"
    rows = await pool.fetch(
        f"SELECT domain, {active} AS active, {row_id} AS id, "
        f"coalesce({created}, {UPGRADE_TIME}, now()) AS created_at FROM domains ORDER BY domain"
    )
    return [dict(r) for r in rows]


# Accounts ---------------------------------------------------------------------

ACCOUNT_COLUMNS = "id, address, password_hash, created_at, updated_at, by_operator"
# Every write to `accounts` announces the address on this channel, in its own
# transaction (delivered at COMMIT): open event streams of that address
# decide again whether they may go on (events.py, mercure.py).
ACCOUNTS_CHANNEL = "tempmail_accounts"


def announced(write: str) -> str:
    """`write` (an INSERT, UPDATE or DELETE of accounts) returning the rows it
    changed, each announced on ACCOUNTS_CHANNEL."""
    return (
        f"WITH changed AS ({write} RETURNING {ACCOUNT_COLUMNS}) "
        f"SELECT {ACCOUNT_COLUMNS}, pg_notify('{ACCOUNTS_CHANNEL}', address) AS announced "
        "FROM changed"
    )


async def account_by_id(pool: Executor, account_id: uuid.UUID) -> Record | None:
    return await pool.fetchrow(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1", account_id)


async def account_by_address(pool: Executor, address: str) -> Record | None:
    return await pool.fetchrow(
        f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE address = $1", address
    )


async def create_account(
    pool: Executor, address: str, password_hash: str, *, by_operator: bool
) -> Record | None:
    """The new account, or None if the address already has one. `by_operator`:
    made with the command line (what lets it read a private_email address)."""
    return await pool.fetchrow(
        announced(
            "INSERT INTO accounts (id, address, password_hash, by_operator) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (address) DO NOTHING"
        ),
        uuid.uuid4(),
        address,
        password_hash,
        by_operator,
    )


async def set_password(pool: Executor, address: str, password_hash: str) -> bool:
    changed = await pool.fetch(
        announced("UPDATE accounts SET password_hash = $2, updated_at = now() WHERE address = $1"),
        address,
        password_hash,
    )
    return bool(changed)


async def remove_account(pool: Executor, address: str) -> bool:
    """Delete the account of `address` (its mail stays; the command line's `remove`)."""
    return bool(await pool.fetch(announced("DELETE FROM accounts WHERE address = $1"), address))


async def all_accounts(pool: Executor) -> list[Record]:
    return list(
        await pool.fetch("SELECT address, created_at, by_operator FROM accounts ORDER BY address")
    )


async def delete_account(pool: asyncpg.Pool, account_id: uuid.UUID, address: str) -> None:
    """Delete the account and its mail in one transaction: an address whose
    account is gone is open to anyone again, so its mail must not stay."""
    async with pool.acquire() as conn, conn.transaction():
        await _delete_mail(conn, address, None)
        await conn.execute(announced("DELETE FROM accounts WHERE id = $1"), account_id)


async def used_bytes(pool: asyncpg.Pool, address: str) -> int:
    return int(
        await pool.fetchval(
            "SELECT coalesce(sum(size), 0) FROM emails WHERE mailbox_owner = $1", address
        )
    )


# Mail -------------------------------------------------------------------------


async def page(
    pool: asyncpg.Pool, address: str, offset: int, limit: int
) -> tuple[list[Record], int, int]:
    """(rows newest first, total, unread) of one mailbox."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT {LIST_COLUMNS} FROM emails e WHERE e.mailbox_owner = $1 {ORDER} "
            "LIMIT $2 OFFSET $3",
            address,
            limit,
            offset,
        )
        counts = await conn.fetchrow(
            "SELECT count(*) AS total, "
            "count(*) FILTER (WHERE NOT ('\\Seen' = ANY(coalesce(flags, '{}')))) AS unread "
            "FROM emails WHERE mailbox_owner = $1",
            address,
        )
    assert counts is not None
    return list(rows), int(counts["total"]), int(counts["unread"])


@dataclasses.dataclass(frozen=True)
class Term:
    """One search condition: `field` is one of SEARCH_FIELDS (or 'read', 'attachment')."""

    field: str
    value: str
    exclude: bool = False


# Search field -> the SQL text it matches (ILIKE) against; never user input.
SEARCH_FIELDS = {
    "to": "array_to_string(coalesce(e.header_to, e.to_addrs), ' ')",
    "from": "(coalesce(e.header_from, '') || ' ' || e.from_addr)",
    "subject": "e.subject",
    "message-id": "coalesce(e.message_id, '')",
    "text": (
        "(e.subject || ' ' || coalesce(e.header_from, '') || ' ' || e.from_addr || ' ' || "
        "array_to_string(coalesce(e.header_to, e.to_addrs), ' ') || ' ' || e.body)"
    ),
}


def like_pattern(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def search_condition(terms: Sequence[Term], first_arg: int) -> tuple[str, list[Any]]:
    """SQL conditions (ANDed) for `terms`, with $-arguments from `first_arg` on."""
    parts: list[str] = []
    args: list[Any] = []
    for term in terms:
        if term.field == "read":
            condition = "('\\Seen' = ANY(coalesce(e.flags, '{}')))"
            wanted = (term.value == "true") != term.exclude
            parts.append(condition if wanted else f"NOT {condition}")
            continue
        if term.field == "attachment":
            condition = "(jsonb_array_length(coalesce(e.attachments, '[]'::jsonb)) > 0)"
            parts.append(f"NOT {condition}" if term.exclude else condition)
            continue
        column = SEARCH_FIELDS[term.field]
        args.append(like_pattern(term.value))
        operator = "NOT ILIKE" if term.exclude else "ILIKE"
        parts.append(f"{column} {operator} ${first_arg + len(args) - 1}")
    return (" AND ".join(parts) or "true"), args


async def search(
    pool: asyncpg.Pool, address: str, terms: Sequence[Term], offset: int, limit: int
) -> tuple[list[Record], int, int, int, int]:
    """(rows, matching, matching unread, mailbox total, mailbox unread)."""
    condition, args = search_condition(terms, 2)
    seen = "('\\Seen' = ANY(coalesce(e.flags, '{}')))"
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT {LIST_COLUMNS} FROM emails e WHERE e.mailbox_owner = $1 AND {condition} "
            f"{ORDER} LIMIT ${len(args) + 2} OFFSET ${len(args) + 3}",
            address,
            *args,
            limit,
            offset,
        )
        counts = await conn.fetchrow(
            "SELECT count(*) AS total, count(*) FILTER (WHERE NOT " + seen + ") AS unread, "
            f"count(*) FILTER (WHERE {condition}) AS matching, "
            f"count(*) FILTER (WHERE {condition} AND NOT {seen}) AS matching_unread "
            "FROM emails e WHERE e.mailbox_owner = $1",
            address,
            *args,
        )
    assert counts is not None
    return (
        list(rows),
        int(counts["matching"]),
        int(counts["matching_unread"]),
        int(counts["total"]),
        int(counts["unread"]),
    )


async def message(pool: asyncpg.Pool, address: str, message_id: uuid.UUID) -> Record | None:
    """One message of `address` with its whole text and HTML, or None."""
    return await pool.fetchrow(
        f"SELECT {FULL_COLUMNS} FROM emails e WHERE e.id = $1 AND e.mailbox_owner = $2",
        message_id,
        address,
    )


async def latest(pool: asyncpg.Pool, address: str) -> Record | None:
    return await pool.fetchrow(
        f"SELECT {FULL_COLUMNS} FROM emails e WHERE e.mailbox_owner = $1 {ORDER} LIMIT 1",
        address,
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
    pool: asyncpg.Pool, address: str, ids: Sequence[uuid.UUID] | None, seen: bool
) -> int:
    """Add or remove '\\Seen' on `ids` of `address` (None: all its mail); rows changed."""
    flags = (
        "array_append(array_remove(coalesce(flags, '{}'), '\\Seen'), '\\Seen')"
        if seen
        else "array_remove(coalesce(flags, '{}'), '\\Seen')"
    )
    where = "mailbox_owner = $1" + ("" if ids is None else " AND id = ANY($2)")
    has_seen = "'\\Seen' = ANY(coalesce(flags, '{}'))"
    changed = f"NOT ({has_seen})" if seen else has_seen
    args: list[Any] = [address] if ids is None else [address, list(ids)]
    status = await pool.execute(
        f"UPDATE emails SET flags = {flags} WHERE {where} AND {changed}", *args
    )
    return int(status.rsplit(" ", 1)[1])


async def delete_mail(pool: asyncpg.Pool, address: str, ids: Sequence[uuid.UUID] | None) -> int:
    """Delete `ids` of `address` (None: all its mail) and raw messages no other row
    points at, in one transaction; how many emails rows went."""
    async with pool.acquire() as conn, conn.transaction():
        return await _delete_mail(conn, address, ids)


async def _delete_mail(
    conn: asyncpg.Connection, address: str, ids: Sequence[uuid.UUID] | None
) -> int:
    where = "mailbox_owner = $1" + ("" if ids is None else " AND id = ANY($2)")
    args: list[Any] = [address] if ids is None else [address, list(ids)]
    # Lock the raw messages first: two deletes of the two recipients of one
    # message then take turns, and the second sees that no row is left.
    raw_ids = [
        r[0]
        for r in await conn.fetch(
            "SELECT id FROM raw_messages WHERE id IN "
            f"(SELECT raw_id FROM emails WHERE {where} AND raw_id IS NOT NULL) FOR UPDATE",
            *args,
        )
    ]
    status = await conn.execute(f"DELETE FROM emails WHERE {where}", *args)
    if raw_ids:
        await conn.execute(
            "DELETE FROM raw_messages r WHERE r.id = ANY($1) "
            "AND NOT EXISTS (SELECT 1 FROM emails e WHERE e.raw_id = r.id)",
            raw_ids,
        )
    return int(status.rsplit(" ", 1)[1])


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


async def database_time(conn: asyncpg.Connection) -> datetime.datetime:
    """The database's clock now (a LISTEN connection's ping)."""
    moment = await conn.fetchval("SELECT clock_timestamp()")
    assert isinstance(moment, datetime.datetime)
    return moment
