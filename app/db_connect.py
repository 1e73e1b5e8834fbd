"""Reaching PostgreSQL at start: one connection that proves the URL works,
and when it does not, the one line that says where we tried, what failed and
what to fix (`problem`, pure).

serve, api, check and every command that uses the database try it first,
so a wrong host, port, role, password or database name is one line naming
the setting (its password masked), not a traceback or a retry loop.

Which URL for what (`Route`): queries and writes go over DATABASE_URL,
which may be a transaction-mode pooler (PgBouncer, Supabase's port 6543:
DATABASE_POOLED); what needs a session of its own (LISTEN, session
advisory locks, schema installs) over DATABASE_DIRECT_URL when it is set.
"""

from __future__ import annotations

import dataclasses
import socket
from urllib.parse import parse_qs, urlsplit

import asyncpg

from . import db
from .config import Settings
from .masking import mask_url

CONNECT_TIMEOUT = 5.0  # seconds, as db.connect and the pools
# Supabase's transaction-mode pooler (Supavisor) listens on this port; its
# session-mode pooler (a session each, like a direct connection) on 5432.
POOLER_PORT = 6543


def looks_pooled(url: str, choice: str = "auto") -> bool:
    """Does `url` go through a transaction-mode pooler? DATABASE_POOLED's
    answer: `true`/`false` as set; `auto` true for port 6543 (pure)."""
    if choice != "auto":
        return choice == "true"
    try:
        return urlsplit(url).port == POOLER_PORT
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True)
class Route:
    """Where each kind of work reaches the database."""

    url: str  # queries and writes (DATABASE_URL, or the embedded one)
    pooled: bool  # `url` is a transaction-mode pooler: no statement cache
    session_url: str  # LISTEN, session advisory locks, schema installs
    host: str  # HOST_NAME: application_name of our connections

    @property
    def has_session(self) -> bool:
        """Does `session_url` give a session of its own (not a pooler's turn)?"""
        return self.session_url != self.url or not self.pooled

    @property
    def name(self) -> str:
        return f"tempmail {self.host}"


def route(settings: Settings, url: str) -> Route:
    """The Route of `settings`, `url` being DATABASE_URL or the embedded one."""
    return Route(
        url=url,
        pooled=looks_pooled(url, settings.database_pooled),
        session_url=settings.database_direct_url or url,
        host=settings.host_name,
    )


def pooler_warning(settings: Settings) -> str | None:
    """`check`'s line when DATABASE_URL is pooled and no direct URL is set (pure)."""
    url = settings.database_url
    if not url or settings.database_direct_url or not looks_pooled(url, settings.database_pooled):
        return None
    return (
        f"DATABASE_URL={mask_url(url)} is a transaction-mode pooler (DATABASE_POOLED="
        f"{settings.database_pooled}) and DATABASE_DIRECT_URL is empty: list changes are "
        "seen only at the next *_REFRESH (no LISTEN), the API's live events need a session "
        "too, and so does init-db when it builds an index on an existing table; set "
        "DATABASE_DIRECT_URL to a session connection to the primary (Supabase: the direct "
        "URL, or the session pooler on port 5432)"
    )


class Unusable(Exception):
    """The database cannot be used with this URL; str() is the one line to show."""


def address(url: str) -> str:
    """host:port the URL points at (libpq's defaults: localhost:5432; a
    unix socket directory given as ?host=)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or parse_qs(parts.query).get("host", ["localhost"])[0]
        port = parts.port or 5432
    except ValueError:
        return "(an address that cannot be read)"
    return f"{host}:{port}" if not host.startswith("/") else f"{host}/.s.PGSQL.{port}"


def _reason_and_fix(error: BaseException, setting: str) -> tuple[str, str]:
    state = getattr(error, "sqlstate", None)
    said = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if state == "28P01":
        return said, f"fix the password in {setting}"
    if state == "28000":
        return said, f"fix the user name in {setting}, or create that role with LOGIN"
    if state == "3D000":
        return said, f"fix the database name in {setting}, or create it (createdb -O ROLE NAME)"
    if isinstance(error, socket.gaierror):  # no such name, or no DNS answer
        return f"cannot resolve the host name ({error.strerror})", (
            f"fix the host name in {setting}"
        )
    if isinstance(error, ConnectionRefusedError) or "Connect call failed" in said:
        return "connection refused", (
            f"start PostgreSQL there, or fix the host and port in {setting}"
        )
    if isinstance(error, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT:g} s", (
            f"check the host and port in {setting}, and any firewall between"
        )
    if isinstance(error, FileNotFoundError):
        return "no socket there", f"start PostgreSQL, or fix the host in {setting}"
    return said, f"check {setting}"


def problem(url: str, error: BaseException, setting: str = "DATABASE_URL") -> str:
    """The one line for a failed connection to `url` (pure)."""
    reason, fix = _reason_and_fix(error, setting)
    return (
        f"{setting}={mask_url(url)}: cannot connect to PostgreSQL at {address(url)}: "
        f"{reason}; {fix}"
    )


# What a failed connect raises: the network, the server (authentication,
# no such database), or asyncpg refusing the URL.
CONNECT_ERRORS = (OSError, TimeoutError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def connect(
    url: str, setting: str = "DATABASE_URL", pooled: bool = False, name: str = ""
) -> asyncpg.Connection:
    """A connection to `url`; Unusable (the line to show) if there is none."""
    try:
        return await asyncpg.connect(
            url, timeout=CONNECT_TIMEOUT, **db.connect_options(pooled, name)
        )
    except CONNECT_ERRORS as error:
        raise Unusable(problem(url, error, setting)) from None


async def reach(url: str, setting: str = "DATABASE_URL", pooled: bool = False) -> None:
    """Connect once and close; raise Unusable with the line to show."""
    await (await connect(url, setting, pooled)).close()


async def connect_session(where: Route) -> asyncpg.Connection:
    """A connection for session work (schema installs, the CLI's commands):
    DATABASE_DIRECT_URL when set, else DATABASE_URL."""
    direct = where.session_url != where.url
    setting = "DATABASE_DIRECT_URL" if direct else "DATABASE_URL"
    return await connect(where.session_url, setting, not where.has_session, where.name)


async def reach_route(where: Route) -> None:
    """Reach DATABASE_URL, and DATABASE_DIRECT_URL when it is another URL."""
    await reach(where.url, pooled=where.pooled)
    if where.session_url != where.url:
        await reach(where.session_url, "DATABASE_DIRECT_URL")
