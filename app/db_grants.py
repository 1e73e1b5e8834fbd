"""The API's own PostgreSQL role (API_DATABASE_URL): the privileges its
routes need and nothing more (no DDL, no access to bans or the spool's
tables), granted by `init-db` and checked by `check`.

The tables' owner (DATABASE_URL's role: serve, init-db, retention) makes
and drops tables and partitions; the API only reads mail, marks it read,
deletes it, and keeps its accounts. Grants on a partitioned table cover
its partitions, the ones retention makes later included. A GRANT changes
the catalog only: it waits for no lock, so it is safe under load. A release
that gives the API a new table or column to write adds it here.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from . import db

# (privilege, table, columns): columns only where the API writes one column.
API_GRANTS = (
    ("SELECT", "emails", ()),
    ("UPDATE", "emails", ("flags", "tags")),  # read / unread; Mailpit tags (050)
    ("DELETE", "emails", ()),
    ("SELECT", "raw_messages", ()),
    # Deleting mail locks its raw message first (SELECT ... FOR UPDATE needs an
    # UPDATE privilege on one column); nothing updates it.
    ("UPDATE", "raw_messages", ("id",)),
    ("DELETE", "raw_messages", ()),
    ("SELECT", "domains", ()),
    ("SELECT", "private_email", ()),
    ("SELECT", "accounts", ()),
    ("INSERT", "accounts", ()),
    ("UPDATE", "accounts", ()),
    ("DELETE", "accounts", ()),
    # An account's own webhooks (030; app/api/webhooks.py); its events are
    # only counted, and go with the endpoint (ON DELETE CASCADE, run as the owner).
    ("SELECT", "webhook_endpoints", ()),
    ("INSERT", "webhook_endpoints", ()),
    ("DELETE", "webhook_endpoints", ()),
    ("SELECT", "webhook_outbox", ()),
    ("SELECT", "schema_migrations", ()),  # is the schema current? (start-up)
)


def role_of(url: str) -> str | None:
    """The user name in a PostgreSQL URL (None if it names none)."""
    return urlsplit(url).username or None


def _named(privilege: str, columns: tuple[str, ...], quote: bool = True) -> str:
    """`UPDATE ("flags")` or `SELECT`: a privilege, on these columns if any."""
    names = ", ".join(db.quote_ident(c) if quote else c for c in columns)
    return f"{privilege} ({names})" if columns else privilege


def _on(privilege: str, table: str, columns: tuple[str, ...]) -> str:
    return f"{_named(privilege, columns)} ON {db.quote_ident(table)}"


def grant_statements(role: str) -> list[str]:
    """The GRANTs `init-db` runs (pure; also what the README shows)."""
    return [f"GRANT {_on(*grant)} TO {db.quote_ident(role)}" for grant in API_GRANTS]


async def grant(conn: db.Connection, role: str) -> None:
    """Give `role` what the API needs (idempotent), in one transaction."""
    async with conn.transaction():
        for statement in grant_statements(role):
            await conn.execute(statement)


async def missing(conn: db.Connection) -> list[str]:
    """The API grants the connected role lacks, one `PRIVILEGE on table` each."""
    lacking = []
    for privilege, table, columns in API_GRANTS:
        if columns:
            held = all(
                [
                    await conn.fetchval(
                        "SELECT has_column_privilege($1, $2, $3)", table, column, privilege
                    )
                    for column in columns
                ]
            )
        else:
            held = await conn.fetchval("SELECT has_table_privilege($1, $2)", table, privilege)
        if not held:
            lacking.append(f"{_named(privilege, columns, quote=False)} on {table}")
    return lacking
