"""The read side's pool and what it reads of the database itself: the schema
install, which optional `domains` columns exist, the domains, the clock.

The read side's SQL is this module and its siblings, one per thing served:
queries_mail.py (a mailbox's messages), queries_search.py (the conditions
they are selected by), queries_tags.py (Mailpit's tags), queries_accounts.py
(accounts). Every mail query is keyed by `emails.mailbox_owner` (the
recipient, as the writer stores it) and answered from the `(mailbox_owner,
received_at)` index, or by id (the primary key). Nothing here changes a
table's structure; the one table of ours is made by
sql/migrations/010_api.sql (and 011, 012), the `emails.tags` column by 050.
`domains` is read as a Cybertemp database has it: `active` and `id` may be
missing (`Schema` says which exist). `private_email` is not read here: the
API reads it as the service does (private.py).
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any, TypeAlias

import asyncpg

from .. import db, db_schema

Record: TypeAlias = asyncpg.Record
# What a query may raise when the database is unreachable or failed it.
DATABASE_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


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


async def database_time(conn: asyncpg.Connection) -> datetime.datetime:
    """The database's clock now (a LISTEN connection's ping)."""
    moment = await conn.fetchval("SELECT clock_timestamp()")
    assert isinstance(moment, datetime.datetime)
    return moment
