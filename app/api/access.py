"""Who may read which address: accounts, passwords, tokens and the rules, in one place.

- Passwords are hashed with argon2id (argon2-cffi defaults), off the event loop.
- Tokens are JWTs (PyJWT, HS256) signed with API_SECRET; when it is empty a
  secret is generated once and kept in DATA_DIR/api_secret (mode 0600).
  A token names its account (`id`), its address and the account's token
  generation when it was issued (`gen`), and expires after TOKEN_DAYS; the
  account must still exist, at that generation, when it is used: deleting
  an account revokes its tokens, and a password change or `accounts
  revoke-tokens` (which move the generation on) revokes those issued before.
- `decide` is the whole rule set: an address with an account, or listed in
  private_email, or any address with API_ACCESS=accounts, is read only
  with its own credential; other addresses are open (the disposable-mail
  model). A credential for one address never reads another, whatever the
  route: presenting it for another address is refused, not ignored.
- `account_holds` says which accounts are credentials at all: on a
  private_email address only one the operator made (`accounts add`). The
  website's listing wins over an account a stranger made through POST
  /accounts before the address was listed (or within PRIVATE_REFRESH of
  it): that account proves nothing, so its token and password read
  nothing, on any route, and it cannot be deleted with the mail it would
  take along.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import enum
import hashlib
import logging
import os
import secrets
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

import argon2
import jwt

log = logging.getLogger("app.api")

TOKEN_DAYS = 7
SECRET_FILE = "api_secret"
MIN_PASSWORD = 6
MAX_PASSWORD = 1024

_hasher = argon2.PasswordHasher()


def load_secret(api_secret: str | None, data_dir: str) -> str:
    """API_SECRET, or the one generated under `data_dir` (made once, mode 0600)."""
    if api_secret:
        return api_secret
    path = Path(data_dir) / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(48))
    log.warning("[api] API_SECRET is unset: generated one in %s", path)
    return path.read_text().strip()


# Passwords ----------------------------------------------------------------------


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


def password_problem(password: object) -> str | None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        return f"This value is too short. It should have {MIN_PASSWORD} characters or more."
    if len(password) > MAX_PASSWORD:
        return f"This value is too long. It should have {MAX_PASSWORD} characters or less."
    return None


class PasswordChecker:
    """argon2 verification (tens of ms, in a thread) with a short memory of
    successes, so HTTP basic on every Mailpit request does not hash each time."""

    def __init__(self, ttl: float = 300, size: int = 1024) -> None:
        self.ttl = ttl
        self.size = size
        self._ok: OrderedDict[bytes, float] = OrderedDict()

    async def verify(self, password_hash: str, password: str) -> bool:
        key = hashlib.sha256(f"{password_hash}\0{password}".encode()).digest()
        now = time.monotonic()
        until = self._ok.get(key)
        if until is not None and until > now:
            return True
        try:
            await asyncio.to_thread(_hasher.verify, password_hash, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False
        self._ok[key] = now + self.ttl
        while len(self._ok) > self.size:
            self._ok.popitem(last=False)
        return True


# Tokens -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Claims:
    account_id: uuid.UUID
    address: str
    generation: int  # the account's token generation when the token was issued


def token_generation(row: Any) -> int:
    """An accounts row's token generation (NULL, from before migration 012: 0)."""
    return int(row["token_generation"] or 0)


def issue_token(secret: str, account_id: uuid.UUID, address: str, generation: int) -> str:
    now = datetime.datetime.now(datetime.UTC)
    payload = {
        "iat": now,
        "exp": now + datetime.timedelta(days=TOKEN_DAYS),
        "roles": ["ROLE_USER"],
        "address": address,
        "id": str(account_id),
        "gen": generation,
        "mercure": {"subscribe": [f"/accounts/{account_id}"]},
    }
    return jwt.encode(payload, secret, algorithm="HS256")


def read_token(secret: str, token: str) -> Claims | None:
    """The claims of a valid, unexpired token of ours; None otherwise.

    A token without `gen` was issued before generations existed: generation 0."""
    try:
        payload = jwt.decode(
            token, secret, algorithms=["HS256"], options={"require": ["exp", "id", "address"]}
        )
        generation = payload.get("gen", 0)
        if not isinstance(generation, int) or isinstance(generation, bool):
            return None
        return Claims(uuid.UUID(str(payload["id"])), str(payload["address"]), generation)
    except (jwt.PyJWTError, ValueError, TypeError):
        return None


# Input that reaches PostgreSQL and argon2 ---------------------------------------------


def storable(value: Any) -> bool:
    """Can this decoded input be compared or stored? Text must hold no NUL
    (PostgreSQL's text refuses it) and no lone surrogate (JSON's "\\ud800":
    not encodable as UTF-8); lists and objects are checked all through."""
    pending = [value]
    while pending:  # no recursion: a body may nest as deep as the parser allowed
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item or not item.isascii() and not _encodable(item):
                return False
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
    return True


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# Credentials in a request ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Credential:
    """What a request presented: a bearer token, or HTTP basic (address, password)."""

    token: str | None = None
    basic: tuple[str, str] | None = None

    @property
    def present(self) -> bool:
        return self.token is not None or self.basic is not None


def credential(authorization: str | None, query_token: str | None = None) -> Credential:
    """Parse an Authorization header (or a Mercure `authorization` query value).

    An empty bearer token ("Bearer " with nothing after it) counts as none:
    mail.tm clients send one on public routes before they have logged in.
    """
    value = (authorization or "").strip()
    scheme, _, rest = value.partition(" ")
    rest = rest.strip()
    if scheme.lower() == "bearer":
        return Credential(token=rest or None)
    if scheme.lower() == "basic" and rest:
        try:
            user, colon, password = base64.b64decode(rest, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return Credential(basic=("", ""))
        valid = colon and storable((user, password))
        return Credential(basic=(user, password) if valid else ("", ""))
    if query_token:
        return Credential(token=query_token.removeprefix("Bearer ").strip() or None)
    return Credential()


# The rules ------------------------------------------------------------------------


def account_holds(*, private: bool, by_operator: bool | None) -> bool:
    """Does an account prove its address? Not a private_email address's
    account unless the operator made it (None: made before anyone recorded
    who made accounts, so not known to be the operator's)."""
    return not private or by_operator is True


class Decision(enum.Enum):
    ALLOW = "allow"
    NEED_CREDENTIAL = "need credential"  # 401: claimed address, nothing (valid) presented
    FORBIDDEN = "forbidden"  # a credential for another address


def decide(
    address: str,
    *,
    mode: str,
    claimed: bool,
    private: bool,
    authenticated_as: str | None,
    presented: bool,
) -> Decision:
    """May this request read `address`?

    `authenticated_as` is the address a valid credential proved (None if
    nothing valid was presented); `presented` says whether any credential
    was sent at all (an invalid one is refused, never treated as anonymous).
    """
    if authenticated_as is not None:
        return Decision.ALLOW if authenticated_as == address else Decision.FORBIDDEN
    if presented:
        return Decision.NEED_CREDENTIAL
    if mode == "open" and not claimed and not private:
        return Decision.ALLOW
    return Decision.NEED_CREDENTIAL
