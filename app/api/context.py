"""What every route shares: the process state, content negotiation, JSON
responses, and turning a request's credential into an account.

Route modules (mailtm.py, mailpit.py, app.py) import this; it holds no
route of its own.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import time
import unicodedata
import urllib.parse
import uuid
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from ..config import Settings
from ..policy import DomainList, build_domains, normalize_address
from . import access, queries, queries_accounts, queries_mail
from .events import Hub
from .mimework import MimeWork
from .private import PrivateAddresses

DOMAINS_TTL = 10.0  # seconds the domain list is cached
JSON = "application/json; charset=utf-8"
JSON_LD = "application/ld+json; charset=utf-8"
# Every API response: JSON only, never a page; nothing is framed or sniffed.
# No DNS prefetch either: the page and the message view show senders' links,
# and resolving their host names ahead of a click tells the sender the mail
# was opened.
SAFE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-DNS-Prefetch-Control": "off",
}
# Raw messages and attachments: a download, and inert if opened anyway.
DOWNLOAD_HEADERS = {
    **SAFE_HEADERS,
    "Content-Security-Policy": "sandbox; default-src 'none'",
    "Cache-Control": "private, no-store",
}


@dataclasses.dataclass
class State:
    settings: Settings
    pool: asyncpg.Pool  # the primary: writes, and what a replica has not replayed yet
    reads: asyncpg.Pool  # lists and reads: `pool`, or a read replica's (replica.py)
    hub: Hub
    private: PrivateAddresses
    secret: str
    shape: queries.Schema
    started: datetime.datetime  # Mailpit's /info Uptime
    mime: MimeWork
    passwords: access.PasswordChecker = dataclasses.field(default_factory=access.PasswordChecker)
    _domains: tuple[float, list[dict[str, Any]], DomainList] | None = None

    async def domains(self) -> tuple[list[dict[str, Any]], DomainList]:
        """The domains rows and the matcher, cached for DOMAINS_TTL seconds."""
        now = time.monotonic()
        if self._domains is None or now - self._domains[0] > DOMAINS_TTL:
            rows = await queries.domains(self.pool, self.shape)
            matcher, _problems = build_domains(rows)
            self._domains = (now, rows, matcher)
        return self._domains[1], self._domains[2]


def state(request: Request) -> State:
    return request.app.state.api  # type: ignore[no-any-return]


def wants_ld(request: Request) -> bool:
    """mail.tm's negotiation: JSON-LD unless the client asked for plain JSON."""
    accept = request.headers.get("accept", "").lower()
    if "application/ld+json" in accept:
        return True
    return "application/json" not in accept


def base_url(request: Request) -> str:
    public = state(request).settings.api_public_url
    if public:
        return public.rstrip("/")
    return str(request.base_url).rstrip("/")


def json_response(body: Any, status: int = 200, ld: bool = False) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        status_code=status,
        media_type=JSON_LD if ld else JSON,
        headers=SAFE_HEADERS,
    )


# Characters RFC 5987 lets stand unencoded in `filename*` (attr-char).
_ATTR_CHARS = "!#$&+-.^_`|~"


def content_disposition(filename: str) -> str:
    """`attachment` with the name as RFC 6266 sends it: an ASCII `filename`
    for old clients and, when that had to change it, the name itself as
    UTF-8 in `filename*`.

    Header values are Latin-1 on the wire, so a name in any other script
    cannot be written as is; control characters (CR LF among them) and path
    separators never reach the header in either form.
    """
    name = "".join(c for c in filename if c.isprintable() and c not in "/\\").strip()[:200]
    name = name or "download"
    # NFKD splits accented letters (é -> e + accent), so the fallback keeps the letter.
    folded = unicodedata.normalize("NFKD", name)
    fallback = "".join(
        c if c.isascii() and (c.isalnum() or c in "._-") else "_"
        for c in folded
        if not unicodedata.combining(c)
    )
    header = f'attachment; filename="{fallback}"'
    if fallback == name:
        return header
    return f"{header}; filename*=UTF-8''{urllib.parse.quote(name, safe=_ATTR_CHARS)}"


def download(data: bytes, media_type: str, filename: str) -> Response:
    return Response(
        data,
        media_type=media_type,
        headers={**DOWNLOAD_HEADERS, "Content-Disposition": content_disposition(filename)},
    )


@dataclasses.dataclass(frozen=True)
class Account:
    id: uuid.UUID
    address: str
    row: Any


async def message(ctx: State, address: str, ident: uuid.UUID) -> Any:
    """The row `ident` names in `address` (None: none), from the reads pool;
    one a replica has not replayed yet from the primary: a message an event
    announced is readable at once (replica.py)."""
    row = await queries_mail.message(ctx.reads, address, ident)
    if row is None and ctx.reads is not ctx.pool:
        row = await queries_mail.message(ctx.pool, address, ident)
    return row


async def raw(ctx: State, raw_id: uuid.UUID) -> bytes | None:
    """A raw message's bytes by id, as `message` reads rows."""
    value = await queries_mail.raw(ctx.reads, raw_id)
    if value is None and ctx.reads is not ctx.pool:
        value = await queries_mail.raw(ctx.pool, raw_id)
    return value


async def raw_of(request: Request, row: Any) -> bytes | None:
    """The stored raw message of an emails `row` (None: no row, or a Cybertemp
    row, which has no raw message)."""
    if row is None or row["raw_id"] is None:
        return None
    return await raw(state(request), row["raw_id"])


def holds(ctx: State, row: Any) -> bool:
    """access.account_holds for an accounts `row`, on the private_email list now."""
    return access.account_holds(
        private=row["address"] in ctx.private, by_operator=row["by_operator"]
    )


async def account_for_token(ctx: State, token: str | None) -> Account | None:
    """The existing account a valid token names, if it holds; else None."""
    if not token:
        return None
    claims = access.read_token(ctx.secret, token)
    if claims is None:
        return None
    row = await queries_accounts.account_by_id(ctx.pool, claims.account_id)
    if row is None or row["address"] != claims.address or not holds(ctx, row):
        return None
    if claims.generation != access.token_generation(row):
        return None  # issued before a password change or a revoke-tokens
    return Account(row["id"], row["address"], row)


async def account_for_basic(ctx: State, user: str, password: str) -> Account | None:
    row = await queries_accounts.account_by_address(ctx.pool, normalize_address(user))
    if row is None or not holds(ctx, row):
        return None
    if not await ctx.passwords.verify(row["password_hash"], password):
        return None
    return Account(row["id"], row["address"], row)


async def authenticate(ctx: State, cred: access.Credential) -> Account | None:
    """The account a credential proves (None: nothing, or nothing valid, presented).

    Asked again for every request, and by open event streams (mercure.py),
    so a deleted account, a changed password or revoked tokens stop what
    the credential opened."""
    if cred.token is not None:
        return await account_for_token(ctx, cred.token)
    if cred.basic is not None:
        return await account_for_basic(ctx, *cred.basic)
    return None


@dataclasses.dataclass(frozen=True)
class Reader:
    """The outcome of asking to read one address."""

    decision: access.Decision
    account: Account | None  # the address's own account, if it has one and it is the reader


async def reader_for(ctx: State, address: str, cred: access.Credential) -> Reader:
    """access.decide for `address` and `cred`, on what the database says now."""
    claimed_row = await queries_accounts.account_by_address(ctx.pool, address)
    account = await authenticate(ctx, cred) if cred.present else None
    decision = access.decide(
        address,
        mode=ctx.settings.api_access,
        claimed=claimed_row is not None,
        private=address in ctx.private,
        authenticated_as=account.address if account else None,
        presented=cred.present,
    )
    return Reader(decision, account if decision is access.Decision.ALLOW else None)
