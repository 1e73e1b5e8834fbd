"""The read side's only SQL: its pool, accounts, mail by address, deletes, tags, catch-up.

Every mail query is keyed by `emails.mailbox_owner` (the recipient, as the
writer stores it) and answered from the `(mailbox_owner, received_at)` index,
or by id (the primary key). Nothing here changes a table's structure; the
one table of ours is made by sql/migrations/010_api.sql (and 011, 012), the
`emails.tags` column by 050. `domains` is read as a Cybertemp database has
it: `active` and `id` may be missing (`Schema` says which exist).
`private_email` is not read here: the API reads it as the service does
(private.py).
"""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from collections.abc import Sequence
from typing import Any, TypeAlias

import asyncpg

from .. import db, db_schema

Record: TypeAlias = asyncpg.Record
# What a query may raise when the database is unreachable or failed it.
DATABASE_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)
# The account functions also serve the command line, on a plain connection.
Executor: TypeAlias = asyncpg.Pool | asyncpg.Connection

# What a message shows as its tags (Mailpit's Tags, `tag:` in search, GET
# /tags, /info): its own tags, and `junk` when the defence marked it junk
# (emails.junk). PUT, rename and DELETE of tags change only e.tags: the junk
# mark is the checks' verdict, not a tag a reader can take off.
TAGS = (
    "(coalesce(e.tags, '{}'::text[]) || CASE WHEN e.junk AND NOT "
    "coalesce(lower('junk') = ANY(SELECT lower(t) FROM unnest(e.tags) t), false) "
    "THEN '{junk}'::text[] ELSE '{}'::text[] END)"
)
SEEN = "('\\Seen' = ANY(coalesce(e.flags, '{}')))"

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


async def create_pool(url: str, max_size: int, pooled: bool = False) -> asyncpg.Pool:
    """`pooled`: `url` is a transaction-mode pooler (db.connect_options)."""
    pool = await asyncpg.create_pool(
        url,
        min_size=1,
        max_size=max_size,
        command_timeout=30,
        timeout=5,
        **db.connect_options(pooled),
    )
    assert pool is not None
    return pool


async def install(conn: asyncpg.Connection) -> int:
    """Install or upgrade the schema (ours are migrations 010 to 012); the version.
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

ACCOUNT_COLUMNS = (
    "id, address, password_hash, created_at, updated_at, by_operator, token_generation"
)
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


# Moves an account's token generation on: every token issued before reads nothing.
_NEXT_GENERATION = "token_generation = coalesce(token_generation, 0) + 1, updated_at = now()"


async def set_password(pool: Executor, address: str, password_hash: str) -> bool:
    """A new password; the tokens issued before it stop reading (False: no account)."""
    changed = await pool.fetch(
        announced(f"UPDATE accounts SET password_hash = $2, {_NEXT_GENERATION} WHERE address = $1"),
        address,
        password_hash,
    )
    return bool(changed)


async def revoke_tokens(pool: Executor, address: str) -> bool:
    """Every token issued so far stops reading; the password stays (False: no account)."""
    changed = await pool.fetch(
        announced(f"UPDATE accounts SET {_NEXT_GENERATION} WHERE address = $1"), address
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
    rows, counts = await listing(pool, address, (), offset, limit)
    return rows, counts["total"], counts["unread"]


@dataclasses.dataclass(frozen=True)
class Term:
    """One search condition: `field` is one of SEARCH_FIELDS, or 'read',
    'attachment', 'tag' (one tag, any case), 'tagged' (any tag)."""

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
# Conditions without a value (a term's `value` says which way for 'read').
FLAG_CONDITIONS = {
    "read": SEEN,
    "attachment": "(jsonb_array_length(coalesce(e.attachments, '[]'::jsonb)) > 0)",
    "tagged": f"(cardinality({TAGS}) > 0)",
    # A one-time code or a verification link (README "Codes and links").
    "code": "(coalesce(cardinality(e.codes), 0) > 0 OR e.verify_link IS NOT NULL)",
}


def like_pattern(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def search_condition(terms: Sequence[Term], first_arg: int) -> tuple[str, list[Any]]:
    """SQL conditions (ANDed) for `terms`, with $-arguments from `first_arg` on."""
    parts: list[str] = []
    args: list[Any] = []
    for term in terms:
        exclude = term.exclude != (term.field == "read" and term.value == "false")
        if term.field in FLAG_CONDITIONS:
            condition = FLAG_CONDITIONS[term.field]
        elif term.field == "tag":
            args.append(term.value)
            number = first_arg + len(args) - 1
            condition = f"(lower(${number}) = ANY(SELECT lower(t) FROM unnest({TAGS}) t))"
        else:
            args.append(like_pattern(term.value))
            condition = f"({SEARCH_FIELDS[term.field]} ILIKE ${first_arg + len(args) - 1})"
        parts.append(f"NOT {condition}" if exclude else condition)
    return (" AND ".join(parts) or "true"), args


def selection(
    address: str, ids: Sequence[uuid.UUID] | None = None, terms: Sequence[Term] = ()
) -> tuple[str, list[Any]]:
    """The WHERE of `address`'s rows (alias e): all, `ids` only, and/or those `terms` match."""
    where = "e.mailbox_owner = $1"
    args: list[Any] = [address]
    if ids is not None:
        args.append(list(ids))
        where += f" AND e.id = ANY(${len(args)})"
    if terms:
        condition, more = search_condition(terms, len(args) + 1)
        where += f" AND {condition}"
        args += more
    return where, args


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
        return await _delete_mail(conn, address, ids, terms)


async def _delete_mail(
    conn: asyncpg.Connection,
    address: str,
    ids: Sequence[uuid.UUID] | None,
    terms: Sequence[Term] = (),
) -> int:
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


# Tags (a mailbox's tags are the names on its rows) ------------------------------------


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


async def database_time(conn: asyncpg.Connection) -> datetime.datetime:
    """The database's clock now (a LISTEN connection's ping)."""
    moment = await conn.fetchval("SELECT clock_timestamp()")
    assert isinstance(moment, datetime.datetime)
    return moment
