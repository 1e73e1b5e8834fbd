"""Reaching PostgreSQL at start: one connection that proves the URL works,
and when it does not, the one line that says where we tried, what failed and
what to fix (`problem`, pure).

serve, api, check and every command that uses the database try it first,
so a wrong host, port, role, password or database name is one line naming
the setting (its password masked), not a traceback or a retry loop.
"""

from __future__ import annotations

import socket
from urllib.parse import parse_qs, urlsplit

import asyncpg

from .config import mask_url

CONNECT_TIMEOUT = 5.0  # seconds, as db.connect and the pools


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


async def connect(url: str, setting: str = "DATABASE_URL") -> asyncpg.Connection:
    """A connection to `url`; Unusable (the line to show) if there is none."""
    try:
        return await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
    except CONNECT_ERRORS as error:
        raise Unusable(problem(url, error, setting)) from None


async def reach(url: str, setting: str = "DATABASE_URL") -> None:
    """Connect once and close; raise Unusable with the line to show."""
    await (await connect(url, setting)).close()
