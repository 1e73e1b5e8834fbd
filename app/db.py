"""The service's SQL: pool, batch insert, list tables, and what the db_* modules share.

Only app/db*.py speak SQL: db_schema.py installs and upgrades the schema,
db_expiry.py holds retention's partitions and deletes, db_catalog.py reads
what `check` reports about the mail tables.

What a failed write calls for is db_errors.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

import asyncpg

from . import db_dedup, verdicts
from .db_errors import REFUSED, classify
from .model import Prepared
from .policy import address_spellings
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


@dataclasses.dataclass(frozen=True)
class Column:
    """One emails column: how its value is made for a recipient's row, and
    the SQL that stores it (`r.<name>` unless given; no parameter when
    `value` is None: the SQL alone makes it)."""

    name: str
    type: str = "text"  # of the parameter array
    value: Callable[[Prepared, uuid.UUID, str], Any] | None = None
    sql: str = ""


def _attachments(p: Prepared) -> str:
    return json.dumps(
        [
            {"filename": a.filename, "content_type": a.content_type, "size": a.size}
            for a in p.parsed.attachments
        ]
    )


# The emails columns the writer fills, in Cybertemp's meanings where the
# column is Cybertemp's (README, "Switching from Cybertemp").
EMAIL_COLUMNS = (
    Column("id", "uuid", lambda p, row, owner: row),
    Column("mailbox_owner", "text", lambda p, row, owner: owner),
    Column("subject", "text", lambda p, row, owner: p.parsed.subject),
    Column("body", "text", lambda p, row, owner: p.parsed.body),
    Column("html", "text", lambda p, row, owner: p.parsed.html),
    # Cybertemp stored the envelope sender lower-cased.
    Column("from_addr", "text", lambda p, row, owner: p.envelope.mail_from.lower()),
    # Cybertemp's meaning: the envelope recipient of this row.
    Column("to_addrs", sql="ARRAY[r.mailbox_owner]"),
    Column("received_at", "timestamptz", lambda p, row, owner: p.envelope.received_at),
    Column("timestamp", sql="r.received_at"),
    # The sender's bytes, as Cybertemp counted them: without our trace line.
    Column("size", "bigint", lambda p, row, owner: len(p.envelope.raw) - p.envelope.trace_length),
    Column("message_id", "text", lambda p, row, owner: p.parsed.message_id),
    Column("header_from", "text", lambda p, row, owner: p.parsed.header_from),
    Column(
        "header_to",
        "text",
        lambda p, row, owner: json.dumps(p.parsed.header_to),
        "ARRAY(SELECT jsonb_array_elements_text(r.header_to::jsonb))",
    ),
    Column("attachments", "text", lambda p, row, owner: _attachments(p), "r.attachments::jsonb"),
    Column("remote_ip", "text", lambda p, row, owner: p.envelope.remote_ip, "r.remote_ip::inet"),
    Column("helo", "text", lambda p, row, owner: p.envelope.helo),
    Column("raw_id", "uuid", lambda p, row, owner: p.envelope.id),
    Column("tls", "bool", lambda p, row, owner: p.envelope.tls),
    Column("auth_results", "text", lambda p, row, owner: p.auth and p.auth.header),
    Column("spf", "text", lambda p, row, owner: p.auth and p.auth.spf),
    Column("dkim", "text", lambda p, row, owner: p.auth and p.auth.dkim),
    Column("dmarc", "text", lambda p, row, owner: p.auth and p.auth.dmarc),
    Column("dmarc_domain", "text", lambda p, row, owner: p.auth and p.auth.dmarc_domain),
    # Inbound defence: what the checks found (app/verdicts.py owns the shape).
    Column("verdicts", "text", lambda p, row, owner: verdicts.stored(p), "r.verdicts::jsonb"),
    Column("junk", "bool", lambda p, row, owner: verdicts.is_junk(p)),
    # One-time codes and verification link (migration 035, README "Codes and links").
    Column(
        "codes",
        "text",
        lambda p, row, owner: json.dumps(p.parsed.codes),
        "ARRAY(SELECT jsonb_array_elements_text(r.codes::jsonb))",
    ),
    Column("verify_link", "text", lambda p, row, owner: p.parsed.verify_link),
    Column("encrypted", sql="false"),  # bodies are stored in clear (Cybertemp's flag)
    Column("key_version", sql="NULL"),
)
_PARAMETERS = [c for c in EMAIL_COLUMNS if c.value is not None]
_RAW_PARAMETERS = 3  # $1..$3: raw_messages id, raw, received_at
_OWNER = f"${_RAW_PARAMETERS + 1 + _PARAMETERS.index(EMAIL_COLUMNS[1])}::text[]"
_ROW_ID = f"${_RAW_PARAMETERS + 1 + _PARAMETERS.index(EMAIL_COLUMNS[0])}::uuid[]"
_REVOKE = f"${_RAW_PARAMETERS + len(_PARAMETERS) + 1}::uuid[]"

# One statement, so one round trip and one implicit transaction per batch.
# Ids are made before the insert; ON CONFLICT DO NOTHING makes a retried
# batch that had in fact committed a no-op (idempotent writes). Each new row
# is announced on NEW_MAIL_CHANNEL ("<emails.id> <mailbox_owner>");
# PostgreSQL delivers notifications only at COMMIT, so a listener never
# hears of a row it cannot read yet.
NEW_MAIL_CHANNEL = "tempmail_new_mail"


def _insert_statement(revoking: bool) -> str:
    # Revokes are rare, and a DELETE by raw_id visits every partition's index
    # (raw_id is not the partition key): a statement of its own, only then.
    revokes = f"""
), revoked AS (
    DELETE FROM emails WHERE raw_id = ANY({_REVOKE})
), revoked_raw AS (
    DELETE FROM raw_messages WHERE id = ANY({_REVOKE})"""
    return f"""
WITH raw AS (
    INSERT INTO raw_messages (id, raw, received_at)
    SELECT * FROM unnest($1::uuid[], $2::bytea[], $3::timestamptz[])
    ON CONFLICT DO NOTHING
), mail AS (
    INSERT INTO emails ({", ".join(quote_ident(c.name) for c in EMAIL_COLUMNS)})
    SELECT {", ".join(c.sql or f"r.{c.name}" for c in EMAIL_COLUMNS)}
    FROM unnest({
        ", ".join(f"${_RAW_PARAMETERS + 1 + n}::{c.type}[]" for n, c in enumerate(_PARAMETERS))
    }) AS r({", ".join(c.name for c in _PARAMETERS)})
    ON CONFLICT DO NOTHING
), box AS (
    INSERT INTO inbox (email_address)
    SELECT DISTINCT unnest({_OWNER})
    ON CONFLICT (email_address) DO NOTHING{revokes if revoking else ""}
)
SELECT count(pg_notify('{NEW_MAIL_CHANNEL}', n.id::text || ' ' || n.owner))
FROM unnest({_ROW_ID}, {_OWNER}) AS n(id, owner)
"""


INSERT_BATCH = _insert_statement(revoking=False)
INSERT_AND_REVOKE = _insert_statement(revoking=True)

# private_email's stamp, after the batch's commit and apart from it (best
# effort): a row another transaction holds (a website updating it) is
# skipped, and a lock on the whole table (ALTER TABLE, VACUUM FULL, LOCK
# TABLE) is waited for at most LOCK_TIMEOUT: a lock on a list table must not
# stop mail (in the batch's statement, such a lock held every batch).
STAMP_TIMEOUT = 2.0  # seconds: the batch's 250s wait for the stamp
STAMP_PRIVATE = f"""
UPDATE private_email SET last_updated_at = now()
WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM private_email
    -- Spelled as operators type it: policy.address_spellings.
    WHERE {folded("email")} = ANY($1::text[])
    FOR UPDATE SKIP LOCKED
))
"""


def batch_args(batch: Sequence[Prepared], revoke: Sequence[uuid.UUID]) -> list[list[Any]]:
    """The parameters of INSERT_BATCH: raw_messages arrays, one array per
    EMAIL_COLUMNS parameter (one element per recipient row), and for
    INSERT_AND_REVOKE the revokes."""
    raws: list[list[Any]] = [[], [], []]
    columns: list[list[Any]] = [[] for _ in _PARAMETERS]
    for prepared in batch:
        envelope = prepared.envelope
        for array, value in zip(
            raws, (envelope.id, envelope.raw, envelope.received_at), strict=True
        ):
            array.append(value)
        for row_id, owner in zip(envelope.row_ids, envelope.recipients, strict=True):
            for array, column in zip(columns, _PARAMETERS, strict=True):
                array.append(column.value(prepared, row_id, owner))  # type: ignore[misc]
    return [*raws, *columns, *([list(revoke)] if revoke else [])]


async def stamp_private(pool: asyncpg.Pool, owners: Sequence[str]) -> None:
    """Stamp the private_email rows of `owners` (STAMP_PRIVATE), best effort:
    skipped (logged) while the table stays locked past LOCK_TIMEOUT; the next
    message to the address stamps it."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            spellings = address_spellings(set(owners))
            await conn.execute(STAMP_PRIVATE, spellings, timeout=STAMP_TIMEOUT)
    except Exception as error:
        log.info("[store] private_email not stamped this time: %r", error)


async def insert_batch(
    pool: asyncpg.Pool,
    batch: Sequence[Prepared],
    revoke: Sequence[uuid.UUID] = (),
    dedup_window: float = 0,
    beside: Callable[[Sequence[Prepared]], tuple[str, list[Any]] | None] | None = None,
    seen: db_dedup.Seen = db_dedup.NOTHING_SEEN,
) -> None:
    """Insert `batch` and delete the messages in `revoke`, in one transaction.

    Without resend keys it is one statement: one implicit transaction, one round trip. `revoke`
    holds messages whose sender was told 451 after a write that may have
    committed: the sender will send again, so a copy of ours must not stay.
    With `dedup_window` (or revokes, or `seen`: 250s their clients saw),
    resends are found first, in the same transaction (app/db_dedup.py).
    `beside` makes a statement of the rows kept, run after them in the same
    transaction: the webhook events of the batch (app/webhooks_outbox.py).
    """
    async with pool.acquire() as conn:
        try:
            dedup = bool(revoke or seen.keys) or (dedup_window > 0 and db_dedup.claims(batch))
            if dedup or beside is not None:
                async with conn.transaction():
                    if dedup:
                        batch, revoke = await db_dedup.claim(
                            conn, batch, revoke, dedup_window, seen
                        )
                    await _insert(conn, batch, revoke)
                    events = beside(batch) if beside is not None else None
                    if events is not None:
                        await conn.execute(events[0], *events[1])
            else:
                await _insert(conn, batch, revoke)
        except BaseException:
            # Its state is unknown after a failure: the pool makes a new one.
            # A connection that was lost is released already: terminating it
            # again would raise, and hide the error that matters.
            with contextlib.suppress(asyncpg.InterfaceError):
                conn.terminate()
            raise


async def _insert(
    conn: asyncpg.Connection, batch: Sequence[Prepared], revoke: Sequence[uuid.UUID]
) -> None:
    statement = INSERT_AND_REVOKE if revoke else INSERT_BATCH
    await conn.execute(statement, *batch_args(batch, revoke))


PROBE_BYTES = 64 * 1024  # a message's size, for probe_write


class _RolledBack(Exception):
    """Ends a transaction whose rows must not stay (probe_write, refused_beside)."""


async def probe_write(pool: asyncpg.Pool) -> None:
    """Write a row of mail's size into raw_messages and roll it back: raises
    (DiskFullError) while the database has no room for mail."""
    async with pool.acquire() as conn:
        with contextlib.suppress(_RolledBack):
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO raw_messages (id, raw, received_at) VALUES ($1, $2, now())",
                    uuid.uuid4(),
                    os.urandom(PROBE_BYTES),  # random: compression cannot shrink it
                )
                raise _RolledBack


async def writes_now(pool: asyncpg.Pool) -> bool:
    """Does the database take a write of a message's size now (probe_write)?"""
    try:
        await probe_write(pool)
    except Exception:
        return False
    return True


async def refused_beside(pool: asyncpg.Pool, message: Prepared, twin: Prepared) -> bool:
    """Does the database take `twin` and refuse `message`, in one transaction
    (rolled back: no row stays, no notification is sent)? Between the two
    nothing can change the tables: the twin's insert holds their locks.
    Raises if the twin is refused (or the connection fails)."""
    refused = False
    async with pool.acquire() as conn:
        with contextlib.suppress(_RolledBack):
            async with conn.transaction():
                await conn.execute("SET CONSTRAINTS ALL IMMEDIATE")  # deferred ones too
                await conn.execute(INSERT_BATCH, *batch_args([twin], ()))
                try:
                    async with conn.transaction():  # a savepoint
                        await conn.execute(INSERT_BATCH, *batch_args([message], ()))
                except Exception as error:
                    if classify(error) != REFUSED:
                        raise
                    refused = True
                raise _RolledBack
    return refused


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
