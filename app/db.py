"""The service's SQL: pool, list tables, and what the db_* modules share.

Only app/db*.py speak SQL: db_batch.py holds the batch insert the writer
makes, db_schema.py installs and upgrades the schema, db_partitions.py,
db_fences.py and db_expiry.py hold retention's partitions, fences and
deletes (db_retention_locks.py: the lock rules they keep), db_catalog.py
reads what `check` reports about the mail tables.

What a failed write calls for is db_errors.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import asyncpg

from .rules import COLUMNS as RULE_COLUMNS

Pool = asyncpg.Pool
Connection = asyncpg.Connection

log = logging.getLogger("app.store")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def folded(column: str) -> str:
    """SQL for a stored address in `column` as it is compared with
    policy.address_spellings: ASCII white space and a final dot trimmed,
    lower case (what SQL can do of policy.normalize_address; the spellings
    do the rest). Only ASCII white space: an escape above U+007F is an
    error in a database whose encoding is not UTF8, and this runs in every
    batch the writer commits."""
    return f"lower(rtrim(btrim({column}, E' \\t\\n\\r\\f\\x0b'), '.'))"


def connect_options(pooled: bool = False, name: str = "") -> dict[str, Any]:
    """asyncpg's connection options. Behind a transaction-mode pooler
    (`pooled`) no statement is cached: a named prepared statement lives in
    one server session, and the pooler hands the next query to another.
    asyncpg's unnamed statements stay: it sends Parse/Describe/Flush, then
    Bind/Execute/Sync, one Sync per query, so the pooler keeps one server
    for the whole query. `name` shows in pg_stat_activity.application_name."""
    options: dict[str, Any] = {"statement_cache_size": 0} if pooled else {}
    if name:
        options["server_settings"] = {"application_name": name[:63]}
    return options


async def create_pool(
    url: str, max_size: int = 4, pooled: bool = False, name: str = ""
) -> asyncpg.Pool:
    # min_size=0: the pool can be made while the database is down; the
    # writer's retries then find it once it is back.
    pool = await asyncpg.create_pool(
        url,
        min_size=0,
        max_size=max_size,
        command_timeout=60,
        timeout=5,
        **connect_options(pooled, name),
    )
    assert pool is not None
    return pool


async def connect(url: str, pooled: bool = False, name: str = "") -> asyncpg.Connection:
    return await asyncpg.connect(url, timeout=5, **connect_options(pooled, name))


# `python -m app domains|bans` announces a change here (payload: the table).
LISTS_CHANNEL = "tempmail_lists"
# Each new mail row is announced here by the batch insert (db_batch.py):
# "<emails.id> <mailbox_owner>".
NEW_MAIL_CHANNEL = "tempmail_new_mail"


@contextlib.asynccontextmanager
async def listening(
    url: str, channel: str, on_payload: Callable[[str], None], name: str = ""
) -> AsyncIterator[asyncio.Event]:
    """A connection LISTENing on `channel`; yields an event set when it drops.
    `url` must reach a session of its own (not a transaction-mode pooler)."""
    conn = await connect(url, name=name)
    closed = asyncio.Event()
    conn.add_termination_listener(lambda _: closed.set())
    try:
        await conn.add_listener(channel, lambda _c, _pid, _ch, payload: on_payload(payload))
        yield closed
    finally:
        conn.terminate()


async def announce_list_change(conn: asyncpg.Connection, table: str) -> None:
    await conn.execute("SELECT pg_notify($1, $2)", LISTS_CHANNEL, table)


async def ping(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.fetchval("SELECT 1")


# Shared by the db_* modules ------------------------------------------------------

# How long DDL (and retention's deletes) wait for a table lock before giving
# up until the next try: a reader queued behind our request waits at most this.
LOCK_TIMEOUT = "100ms"


@dataclasses.dataclass(frozen=True)
class TableColumn:
    """A column as the catalog has it (see `columns`)."""

    type: str  # as format_type prints it: "text[]", "timestamp with time zone"
    required: bool  # NOT NULL without a default, identity or generation: an INSERT must name it


async def columns(conn: asyncpg.Connection, table: str) -> dict[str, TableColumn]:
    """The columns of `table` (empty if it does not exist)."""
    rows = await conn.fetch(
        "SELECT attname, format_type(atttypid, atttypmod) AS type, attnotnull AND NOT atthasdef "
        "AND attidentity = '' AND attgenerated = '' AS required FROM pg_attribute "
        "WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        table,
    )
    return {r["attname"]: TableColumn(r["type"], r["required"]) for r in rows}


async def relkind(conn: asyncpg.Connection, name: str) -> str | None:
    """'r' plain table, 'p' partitioned, 'v' view, 'i' index...; None if there is none."""
    value = await conn.fetchval(
        "SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)", name
    )
    return str(value) if value else None


# List tables ------------------------------------------------------------------

# The columns the service reads of each list table (Supabase reads the same).
# domains.active is ours: read where the column exists (a Cybertemp table has
# none, and then every row counts as active).
LIST_COLUMNS = {
    "domains": ("domain", "active"),
    "bans": ("scope", "value", "match_type", "status"),
    "private_email": ("email",),
    "rules": RULE_COLUMNS,
    "receive_pause": ("reason",),
}
OPTIONAL_COLUMNS = frozenset({"active"})


def readable_columns(table: str, present: Iterable[str]) -> list[str]:
    """LIST_COLUMNS of `table` without the optional ones `present` lacks."""
    have = set(present)
    return [c for c in LIST_COLUMNS[table] if c in have or c not in OPTIONAL_COLUMNS]


async def fetch_list(pool: asyncpg.Pool, table: str) -> list[dict[str, Any]]:
    """All rows of one list table (`domains`, `bans` or `private_email`)."""
    async with pool.acquire() as conn:
        wanted = readable_columns(table, await columns(conn, table))
        # `table` is a key of LIST_COLUMNS, never user input.
        rows = await conn.fetch(f"SELECT {', '.join(wanted)} FROM {table}")
        return [dict(r) for r in rows]


async def add_domain(conn: asyncpg.Connection, domain: str) -> None:
    """Add `domain` (or make it active again); works without `active` and without
    a unique constraint on `domain` (the operator's table may have neither)."""
    async with conn.transaction():
        if "active" in await columns(conn, "domains"):
            await conn.execute("UPDATE domains SET active = true WHERE domain = $1", domain)
        await conn.execute(
            "INSERT INTO domains (domain) SELECT $1 "
            "WHERE NOT EXISTS (SELECT 1 FROM domains WHERE domain = $1)",
            domain,
        )


async def remove_domain(conn: asyncpg.Connection, domain: str) -> bool:
    return await conn.execute("DELETE FROM domains WHERE domain = $1", domain) != "DELETE 0"


async def list_domains(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    active = "active" if "active" in await columns(conn, "domains") else "true AS active"
    return await conn.fetch(f"SELECT domain, {active} FROM domains ORDER BY domain")


# Cybertemp's bans: scope 'sender' means 'email', a NULL match_type means exact.
BAN_MATCHES = (
    "(scope = $1 OR (scope = 'sender' AND $1 = 'email')) AND value = $2 "
    "AND coalesce(match_type, 'exact') = $3"
)


async def add_ban(conn: asyncpg.Connection, scope: str, value: str, match_type: str) -> None:
    async with conn.transaction():
        status = await conn.execute(
            f"UPDATE bans SET status = 'active' WHERE {BAN_MATCHES}", scope, value, match_type
        )
        if status == "UPDATE 0":
            await conn.execute(
                "INSERT INTO bans (scope, value, match_type, status) VALUES ($1, $2, $3, 'active')",
                scope,
                value,
                match_type,
            )


async def remove_ban(conn: asyncpg.Connection, scope: str, value: str) -> bool:
    result = await conn.execute(
        "DELETE FROM bans WHERE (scope = $1 OR (scope = 'sender' AND $1 = 'email')) AND value = $2",
        scope,
        value,
    )
    return result != "DELETE 0"


async def list_bans(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT CASE scope WHEN 'sender' THEN 'email' ELSE scope END AS scope, value, "
        "coalesce(match_type, 'exact') AS match_type, status FROM bans ORDER BY 1, 2"
    )
