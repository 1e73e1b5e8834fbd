"""The schema: install and upgrade it, build its indexes, make and drop
partitions, and say what the catalog holds about the mail tables.

With db.py and db_batch.py, the only modules that speak SQL (they hold
the queries of the running service; here: DDL and the catalog). The rule it
keeps: an existing table is the operator's. It is never rebuilt, copied, renamed or dropped;
only nullable columns without defaults (a catalog change) and indexes
(built CONCURRENTLY) are added to it, so its row-level security, policies,
grants, triggers, views and publication membership stay as they were.

DDL runs only when the checksum of sql/ differs from the one recorded in
schema_migrations, each transaction under a short lock_timeout: a busy
table means "retry with backoff", never a queue of readers stuck behind our
lock request.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from . import db

log = logging.getLogger("app.schema")

# app/sql links to sql/ in a checkout; a wheel holds the files themselves.
SCHEMA = (Path(__file__).resolve().parent / "sql").resolve() / "schema.sql"
MIGRATIONS = SCHEMA.parent / "migrations"
# One advisory lock key so several workers installing at once take turns.
SCHEMA_LOCK = 0x7E3D_A11
INDEX_LOCK = SCHEMA_LOCK + 1
RETRY_MAX = 5.0  # seconds between attempts, at most

# Columns the writer fills (app/db_batch.py INSERT_BATCH), beyond the five every
# Cybertemp emails table has, with the type added to a table that lacks one.
EMAIL_COLUMNS = {
    "html": "text",
    "to_addrs": "text[]",
    "timestamp": "timestamp with time zone",
    "size": "bigint",
    "encrypted": "boolean",
    "key_version": "integer",
    "received_at": "timestamp with time zone",
    "auth_results": "text",
    "spf": "text",
    "dkim": "text",
    "dmarc": "text",
    "dmarc_domain": "text",
    "message_id": "text",
    "header_from": "text",
    "attachments": "jsonb",
    "remote_ip": "inet",
    "helo": "text",
    "raw_id": "uuid",
    "tls": "boolean",
    "header_to": "text[]",
    "verdicts": "jsonb",
    "junk": "boolean",
    "codes": "text[]",  # README "Codes and links": NULL on rows stored before them
    "verify_link": "text",
}
EMAIL_BASE_COLUMNS = ("id", "mailbox_owner", "subject", "body", "from_addr")

# (table, name, key): indexes the service needs. `plain` ones only on an
# unpartitioned table (batched retention deletes find expired rows by them).
INDEXES = (
    ("emails", "emails_owner_recent_idx", "(mailbox_owner, received_at DESC NULLS LAST)", False),
    ("emails", "emails_raw_id_idx", "(raw_id)", False),
    ("emails", "emails_received_idx", "(received_at)", True),
    ("raw_messages", "raw_messages_received_idx", "(received_at)", True),
    ("private_email", "private_email_lower_idx", "(lower(email))", False),
)
# Replaced by emails_owner_recent_idx (NULLS LAST puts pre-upgrade rows last).
OBSOLETE_INDEXES = ("emails_owner_received_idx",)


class SchemaRefused(Exception):
    """init-db cannot proceed without changing what the operator has; str() is one line."""


def migrations() -> list[tuple[int, str, Path]]:
    """(version, name, path) of sql/migrations/NNN_name.sql, in order; schema.sql is 1."""
    found = [(1, "schema.sql", SCHEMA)]
    for path in sorted(MIGRATIONS.glob("[0-9][0-9][0-9]_*.sql")):
        found.append((int(path.name[:3]), path.name, path))
    return found


def checksum() -> str:
    """What the installed schema must match for start-up to skip all DDL."""
    digest = hashlib.sha256(repr((EMAIL_COLUMNS, INDEXES, OBSOLETE_INDEXES)).encode())
    for _, name, path in migrations():
        digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


async def installed_checksum(conn: db.Connection) -> str | None:
    if "checksum" not in await db.columns(conn, "schema_migrations"):
        return None  # never installed, or by a release that did not record it
    value = await conn.fetchval("SELECT checksum FROM schema_migrations WHERE version = 1")
    return str(value) if value else None


async def schema_version(conn: db.Connection) -> int:
    """The highest applied migration, 0 if the schema was never installed."""
    if not await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations"))


async def install_schema(conn: db.Connection, indexes: bool = True, patience: float = 300) -> int:
    """Install or upgrade the schema in place; return its version.

    Nothing at all runs when the recorded checksum matches. Otherwise the
    tables (schema.sql, missing columns, migrations) in one transaction,
    retried while a table is busy for up to `patience` seconds; then, if
    `indexes`, the indexes (slow on a big table, but blocking nobody) and
    the checksum. Raises SchemaRefused, changing nothing, when the
    operator's emails table cannot take our rows.
    """
    if await installed_checksum(conn) == checksum():
        return await schema_version(conn)
    await retry_while_busy(conn, "install the schema", lambda: _install_tables(conn), patience)
    if indexes:
        await build_indexes(conn, patience)
        await conn.execute(
            "UPDATE schema_migrations SET checksum = $1 WHERE version = 1", checksum()
        )
    return await schema_version(conn)


async def retry_while_busy(
    conn: db.Connection, what: str, step: Callable[[], Awaitable[object]], patience: float
) -> None:
    """Run `step` (a transaction under db.LOCK_TIMEOUT) until it gets its locks."""
    deadline = time.monotonic() + patience
    backoff = 0.1
    while True:
        try:
            await step()
            return
        except db.asyncpg.LockNotAvailableError:
            if time.monotonic() + backoff > deadline:
                raise
            if backoff == 0.1:
                log.warning(
                    "[schema] %s: a table is busy (%s); retrying with backoff, "
                    "readers are not held up",
                    what,
                    await lock_holders(conn),
                )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RETRY_MAX)


async def lock_holders(conn: db.Connection) -> str:
    """Who holds locks on the mail tables, for the log line of a busy table."""
    rows = await conn.fetch(
        "SELECT DISTINCT a.pid, a.state, date_trunc('second', now() - a.xact_start) AS age "
        "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.granted "
        "AND l.relation IN (to_regclass('emails'), to_regclass('raw_messages')) "
        "AND a.pid <> pg_backend_pid()"
    )
    return ", ".join(f"pid {r['pid']} {r['state']} for {r['age']}" for r in rows) or "no holder"


async def ddl(conn: db.Connection, statement: str) -> None:
    """One DDL statement in its own transaction under db.LOCK_TIMEOUT."""
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{db.LOCK_TIMEOUT}'")
        await conn.execute(statement)


async def _install_tables(conn: db.Connection) -> None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
        if await installed_checksum(conn) == checksum():
            return  # another process installed it while we waited
        await conn.execute(f"SET LOCAL lock_timeout = '{db.LOCK_TIMEOUT}'")
        await refuse_if_unusable(conn)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, "
            "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        if "checksum" not in await db.columns(conn, "schema_migrations"):  # an earlier release
            await conn.execute("ALTER TABLE schema_migrations ADD COLUMN checksum text")
        applied = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, path in migrations():
            if version == 1 or version not in applied:
                await conn.execute(path.read_text())
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2) "
                    "ON CONFLICT DO NOTHING",
                    version,
                    name,
                )
        await add_missing_columns(conn)


KINDS = {"v": "view", "m": "materialized view", "f": "foreign table"}


async def assignable(conn: db.Connection, source: str, target: str) -> bool:
    """Can a `source` value be stored in a `target` column (an assignment cast)?"""
    return bool(
        await conn.fetchval(
            """
            WITH s AS (SELECT * FROM pg_type WHERE oid = to_regtype($1)),
                 d AS (SELECT * FROM pg_type WHERE oid = to_regtype($2))
            SELECT CASE WHEN s.oid = d.oid THEN true
                        WHEN (s.typcategory = 'A') <> (d.typcategory = 'A') THEN false
                        WHEN s.typcategory = 'A' THEN s.typelem = d.typelem
                             OR EXISTS (SELECT 1 FROM pg_cast WHERE castsource = s.typelem
                                        AND casttarget = d.typelem AND castcontext IN ('a', 'i'))
                        ELSE d.typcategory = 'S'
                             OR EXISTS (SELECT 1 FROM pg_cast WHERE castsource = s.oid
                                        AND casttarget = d.oid AND castcontext IN ('a', 'i'))
                   END
            FROM s, d
            """,
            source,
            target,
        )
    )


async def refuse_if_unusable(conn: db.Connection) -> None:
    """Raise SchemaRefused if the existing emails table cannot take the writer's rows."""
    kind = await db.relkind(conn, "emails")
    if kind is None:
        return  # a fresh database: schema.sql creates it
    if kind not in ("r", "p"):
        raise SchemaRefused(
            f"emails is a {KINDS.get(kind, 'relation of kind ' + kind)}, not a table: "
            "the service inserts into it. Point DATABASE_URL at the database holding the "
            "table; nothing was changed"
        )
    columns = await db.columns(conn, "emails")
    missing = [name for name in EMAIL_BASE_COLUMNS if name not in columns]
    if missing:
        raise SchemaRefused(
            f"emails has no column {', '.join(missing)}: it is not a Cybertemp emails table. "
            "Rename it or use another database; nothing was changed"
        )
    written = {*EMAIL_BASE_COLUMNS, *EMAIL_COLUMNS}
    for name, column in columns.items():
        if column.required and name not in written:
            raise SchemaRefused(
                f"emails.{name} is NOT NULL without a default, and the service does not "
                f"write it: give it a default (ALTER TABLE emails ALTER COLUMN {name} SET "
                "DEFAULT ...) or drop NOT NULL; nothing was changed"
            )
    for name, wanted in EMAIL_COLUMNS.items():
        have = columns.get(name)
        if have is not None and not await assignable(conn, wanted, have.type):
            raise SchemaRefused(
                f"emails.{name} is {have.type}, and the service writes {wanted} there: "
                f"change its type or rename it (init-db then adds {name} {wanted}); "
                "nothing was changed"
            )


async def add_missing_columns(conn: db.Connection) -> None:
    """Add the writer's columns the emails table lacks: nullable, no default, no rewrite."""
    columns = await db.columns(conn, "emails")
    missing = [name for name in EMAIL_COLUMNS if name not in columns]
    if not missing:
        return
    await conn.execute(
        "ALTER TABLE emails "
        + ", ".join(f"ADD COLUMN {db.quote_ident(n)} {EMAIL_COLUMNS[n]}" for n in missing)
    )
    log.info(
        "[schema] emails: added columns %s (nullable, no default: existing rows stay as "
        "they are and read as NULL)",
        ", ".join(missing),
    )


# Indexes ---------------------------------------------------------------------------


async def index_valid(conn: db.Connection, name: str) -> bool | None:
    """None if index `name` does not exist, else whether it is valid (complete)."""
    value = await conn.fetchval(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)", name
    )
    return None if value is None else bool(value)


async def indexes_to_build(conn: db.Connection) -> bool:
    """Has build_indexes work: an index missing or invalid, or an obsolete one left?"""
    for table, name, _, plain_only in INDEXES:
        kind = await db.relkind(conn, table)
        if (kind == "r" or (kind == "p" and not plain_only)) and not await index_valid(conn, name):
            return True
    for name in OBSOLETE_INDEXES:
        if await db.relkind(conn, name):
            return True
    return False


async def build_indexes(conn: db.Connection, patience: float = 300) -> None:
    """Make the indexes in INDEXES that are missing, without blocking readers or writers.

    On a plain table: CREATE INDEX CONCURRENTLY (an interrupted build leaves
    an invalid index, dropped and redone here). On a partitioned table: the
    parent index ON ONLY, then each partition's concurrently, attached.
    Workers take turns (a session advisory lock), only when there is work:
    behind a transaction-mode pooler a session lock is not kept (README:
    poolers), and an install where every index is in place takes none.
    """
    if not await indexes_to_build(conn):
        return
    await conn.execute("SELECT pg_advisory_lock($1)", INDEX_LOCK)
    try:
        for table, name, key, plain_only in INDEXES:
            kind = await db.relkind(conn, table)
            if kind == "r":
                await _concurrent_index(conn, table, name, key)
            elif kind == "p" and not plain_only:
                await _partitioned_index(conn, table, name, key, patience)
        for name in OBSOLETE_INDEXES:
            kind = await db.relkind(conn, name)
            if kind == "i":
                await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {db.quote_ident(name)}")
            elif kind == "I":  # a partitioned index cannot be dropped concurrently
                drop = functools.partial(ddl, conn, f"DROP INDEX {db.quote_ident(name)}")
                await retry_while_busy(conn, f"drop {name}", drop, patience)
            if kind:
                log.info("[schema] dropped index %s (replaced by emails_owner_recent_idx)", name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", INDEX_LOCK)


async def _concurrent_index(conn: db.Connection, table: str, name: str, key: str) -> None:
    valid = await index_valid(conn, name)
    if valid:
        return
    if valid is False:  # left behind by an interrupted concurrent build
        await conn.execute(f"DROP INDEX CONCURRENTLY {db.quote_ident(name)}")
    log.info("[schema] building index %s on %s concurrently (reads and writes go on)", name, table)
    await conn.execute(
        f"CREATE INDEX CONCURRENTLY {db.quote_ident(name)} ON {db.quote_ident(table)} {key}"
    )


async def _partitioned_index(
    conn: db.Connection, table: str, name: str, key: str, patience: float
) -> None:
    if await index_valid(conn, name):
        return
    statement = (
        f"CREATE INDEX IF NOT EXISTS {db.quote_ident(name)} ON ONLY {db.quote_ident(table)} {key}"
    )
    await retry_while_busy(conn, f"create {name}", lambda: ddl(conn, statement), patience)
    unindexed = await conn.fetch(
        "SELECT c.relname FROM pg_inherits p JOIN pg_class c ON c.oid = p.inhrelid "
        "WHERE p.inhparent = to_regclass($1) AND NOT EXISTS (SELECT 1 FROM pg_inherits ii "
        "JOIN pg_index x ON x.indexrelid = ii.inhrelid "
        "WHERE ii.inhparent = to_regclass($2) AND x.indrelid = p.inhrelid)",
        table,
        name,
    )
    for (partition,) in unindexed:
        child = f"{partition}_{name}"[:63]
        await _concurrent_index(conn, partition, child, key)
        attach = f"ALTER INDEX {db.quote_ident(name)} ATTACH PARTITION {db.quote_ident(child)}"
        await retry_while_busy(
            conn, f"attach {child}", functools.partial(ddl, conn, attach), patience
        )
