"""What every Mailpit route shares: its answers (text/plain, as Mailpit's
handlers write them), who may read the address of the path, the message
an {ID} names, ?start/?limit, request bodies as Go's json.Decoder reads
them, and the parsed raw message.

Access is access.decide's: an open address needs nothing; a claimed one
needs its bearer token or HTTP basic with the address and its password
(the HTML view and inline parts also take the token as ?authorization=).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

from .. import policy
from . import access, context, mime, queries_mail, search
from .context import Reader, raw_of, reader_for, state

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000  # messages per page, also what ?limit=0 (Mailpit: no limit) lists
NOT_FOUND = "404 page not found"  # Go's http.NotFound, Mailpit's fourOFour
NO_MESSAGE = "Message not found"  # Mailpit's storage.LatestID error


def text(body: str, status: int = 200) -> Response:
    """A text/plain answer, as Mailpit's handlers write every one but JSON."""
    return Response(
        body,
        status,
        media_type="text/plain; charset=utf-8",
        headers={"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"},
    )


def not_found(body: str = NOT_FOUND) -> Response:
    return text(body, 404)


def bad_request(body: str) -> Response:
    return text(body, 400)


async def mailbox(request: Request, query_token: bool = False) -> tuple[str, Reader] | Response:
    """The address of the path, if this request may read it; else the refusal.
    `query_token`: a token may also come as `?authorization=` (for an iframe or an img)."""
    address = policy.normalize_address(request.path_params["address"])
    if policy.address_problem(address):
        return not_found()
    query = request.query_params.get("authorization") if query_token else None
    cred = access.credential(request.headers.get("authorization"), query)
    reader = await reader_for(state(request), address, cred)
    if reader.decision is access.Decision.ALLOW:
        return address, reader
    if reader.decision is access.Decision.FORBIDDEN:
        return text("Forbidden: these credentials are for another address", 403)
    answer = text("Unauthorized", 401)
    answer.headers["WWW-Authenticate"] = 'Basic realm="tempmail"'
    return answer


async def message_row(request: Request, address: str, ident: str) -> Any:
    """The row `ident` names in `address` (None: no such message). `latest`
    is the newest, or with ?query= the newest that search matches (Mailpit's
    LatestID); raises search.Refused for a query past its bounds."""
    ctx = state(request)
    if ident == "latest":
        terms = search.terms(request.query_params.get("query", "").strip())
        return await queries_mail.latest(ctx.reads, address, terms)
    try:
        ident_uuid = uuid.UUID(ident)
    except ValueError:
        return None
    return await context.message(ctx, address, ident_uuid)


def missing(ident: str) -> Response:
    """Mailpit's 404 for a message that is not there."""
    return not_found(NO_MESSAGE if ident == "latest" else NOT_FOUND)


async def path_message(
    request: Request, query_token: bool = False, missing_text: str | None = None
) -> tuple[str, Any] | Response:
    """(the address, the row the path's {id} names) or the answer to send:
    mailbox()'s refusal, a 400 for a `latest?query=` past the bounds, a 404
    (`missing_text`, else Mailpit's for the route's kind of id)."""
    found = await mailbox(request, query_token)
    if isinstance(found, Response):
        return found
    ident = request.path_params["id"]
    try:
        row = await message_row(request, found[0], ident)
    except search.Refused as refused:
        return bad_request(str(refused))
    if row is None:
        return not_found(missing_text) if missing_text else missing(ident)
    return found[0], row


async def parsed_of(request: Request, row: Any) -> mime.Parsed | None:
    """The row's raw message parsed (None: a row without one), off the loop
    unless small, reused across requests (mimework.py)."""
    if row is None or row["raw_id"] is None:
        return None
    work = state(request).mime
    found = work.cached(row["raw_id"])
    if found is not None:
        return found
    raw = await raw_of(request, row)
    return None if raw is None else await work.parsed(row["raw_id"], raw)


# Go's strconv.Atoi: optional sign, ASCII digits, within 64 bits.
_ATOI = re.compile(r"[+-]?[0-9]+")
INT64 = range(-(2**63), 2**63)


def atoi(value: str | None) -> int | None:
    if value is None or not _ATOI.fullmatch(value):
        return None
    number = int(value)
    return number if number in INT64 else None


def start_limit(request: Request) -> tuple[int, int]:
    """?start and ?limit as Mailpit's getStartLimit reads them (what Atoi
    refuses is the default; a negative start is 0, a negative limit the
    default) and 0 as no limit: here at most MAX_LIMIT."""
    start = atoi(request.query_params.get("start"))
    limit = atoi(request.query_params.get("limit"))
    start = start if start is not None and start > 0 else 0
    limit = limit if limit is not None and limit >= 0 else DEFAULT_LIMIT
    return start, MAX_LIMIT if limit == 0 else min(limit, MAX_LIMIT)


# Request bodies ---------------------------------------------------------------------

FORM = "application/x-www-form-urlencoded"
TRUE_WORDS = ("true", "1", "yes", "on")


class BodyError(ValueError):
    """A body Mailpit's decoder refuses (the 400's text)."""


def _typed(name: str, kind: type, value: Any) -> Any:
    """A JSON value as Go decodes it into a field of `kind` (null: the zero value)."""
    if value is None:
        return kind()
    if kind is list and isinstance(value, list) and all(isinstance(v, str | None) for v in value):
        return [v or "" for v in value]
    if kind is not list and isinstance(value, kind):
        return value
    article = "an array of strings" if kind is list else {bool: "a boolean", str: "a string"}[kind]
    raise BodyError(f"invalid request body: {name} must be {article}")


def _json_fields(raw: bytes) -> dict[str, Any]:
    try:
        data, _end = json.JSONDecoder().raw_decode(raw.decode("utf-8").lstrip())
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BodyError("invalid request body: not JSON") from None
    if data is None:  # Go decodes null into the empty struct
        return {}
    if not isinstance(data, dict):
        raise BodyError("invalid request body: a JSON object is expected")
    return data


def _form_fields(raw: bytes, fields: dict[str, type]) -> dict[str, Any]:
    """A form body (what mailpit-api-client sends), typed like the JSON one."""
    found: dict[str, Any] = {}
    for key, values in parse_qs(raw.decode("utf-8", "replace")).items():
        kind = fields.get(key.lower())
        if kind is list:
            found[key] = values
        elif kind is bool:
            found[key] = values[-1].lower() in TRUE_WORDS
        else:
            found[key] = values[-1]
    return found


async def body_fields(request: Request, fields: dict[str, type]) -> dict[str, Any]:
    """The request body as Mailpit's json.Decoder reads it into a struct of
    `fields` (name -> bool, str or list of str): names matched in any case,
    unknown names ignored, null the zero value, an empty body an error.
    A form-encoded body is read too. Raises BodyError."""
    raw = await request.body()
    if not raw.strip():
        raise BodyError("invalid request body: empty")
    lowered = {name.lower(): name for name in fields}
    if FORM in request.headers.get("content-type", ""):
        data = _form_fields(raw, {name.lower(): kind for name, kind in fields.items()})
    else:
        data = _json_fields(raw)
    if not access.storable(list(data.items())):
        raise BodyError("invalid request body: NUL or an invalid character")
    values: dict[str, Any] = {name: kind() for name, kind in fields.items()}
    for key, value in data.items():
        name = lowered.get(key.lower())
        if name is not None:
            values[name] = _typed(name, fields[name], value)
    return values


def uuids(values: list[str]) -> list[uuid.UUID]:
    """The message ids among `values` (others name no message here)."""
    found = []
    for value in values:
        try:
            found.append(uuid.UUID(value))
        except ValueError:
            continue
    return found
