"""A per-address subset of Mailpit's API v1, under /mailpit/{address}/api/v1/.

Each address is one Mailpit mailbox: the routes, parameters, field names
and replies are Mailpit's (server/apiv1 and its swagger), so a Mailpit
client works with its base URL set to /mailpit/{address}. PUT and DELETE
answer `200 ok` in text/plain; DELETE without IDs empties that address.

Access is access.decide's: an open address needs nothing; a claimed one
needs its bearer token or HTTP basic with the address and its password.

Beyond Mailpit: PUT/DELETE also accept a form-encoded body (`ids`,
`Read`), which is what the mailpit-api-client library sends; Mailpit itself
would read such a DELETE as "delete everything".

Mailpit's web UI route `/view/{ID}.html` is here too, per address: the
message's HTML, sanitised, as a document of its own for the inbox page's
sandboxed iframe, under a Content-Security-Policy that loads nothing but
inline style and data: images (and remote images with `?remoteImages=1`).
An iframe cannot send an Authorization header, so this route (like the
Mercure hub) also takes a claimed address's token as `?authorization=`.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from .. import policy
from . import access, mime, queries, shapes
from .context import DOWNLOAD_HEADERS, Reader, download, json_response, raw_of, reader_for, state

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
MAX_SEARCH_TERMS = 20


def text(body: str, status: int = 200) -> Response:
    return PlainTextResponse(body, status, headers={"X-Content-Type-Options": "nosniff"})


def not_found() -> Response:
    return text("404 page not found", 404)


def search_terms(query: str) -> list[queries.Term]:
    """Mailpit's search syntax, the part that fits one mailbox: to:, from:,
    subject:, message-id:, is:read/unread, has:attachment, free text; words
    are split on spaces outside double quotes; a leading - or ! negates."""
    words: list[str] = []
    current: list[str] = []
    quoted = False
    for char in query:
        if char == '"':
            quoted = not quoted
        elif char == " " and not quoted:
            words.append("".join(current))
            current = []
        else:
            current.append(char)
    words.append("".join(current))
    terms = []
    for word in (w.strip() for w in words):
        exclude = len(word) > 1 and word[0] in "-!"
        if exclude:
            word = word[1:]
        lower = word.lower()
        if not word:
            continue
        if lower in ("is:read", "is:unread"):
            terms.append(queries.Term("read", "true" if lower == "is:read" else "false", exclude))
        elif lower == "tag:junk":
            terms.append(queries.Term("junk", "", exclude))
        elif lower in ("has:attachment", "has:attachments"):
            terms.append(queries.Term("attachment", "", exclude))
        else:
            field, colon, value = word.partition(":")
            if colon and field.lower() in ("to", "from", "subject", "message-id"):
                if value:
                    terms.append(queries.Term(field.lower(), value, exclude))
            else:
                terms.append(queries.Term("text", word, exclude))
    return terms


# Mailpit reads start and limit as Go ints (64 bits), as PostgreSQL's OFFSET does.
INT64 = range(-(2**63), 2**63)


def start_limit(request: Request) -> tuple[int, int] | Response:
    """?start and ?limit as Mailpit reads them (a value that is no number is
    the default), or the 400 to answer for a number beyond 64 bits."""
    numbers = {}
    for name, default in (("start", 0), ("limit", DEFAULT_LIMIT)):
        try:
            numbers[name] = int(request.query_params.get(name, default))
        except ValueError:
            numbers[name] = default
        if numbers[name] not in INT64:
            return text(f"Error: {name} is out of range", 400)
    start, limit = max(0, numbers["start"]), numbers["limit"]
    return start, min(MAX_LIMIT, limit if limit >= 0 else DEFAULT_LIMIT)


async def mailbox(request: Request, query_token: bool = False) -> tuple[str, Reader] | Response:
    """The address of the path, if this request may read it; else the refusal.
    `query_token`: a token may also come as `?authorization=` (the HTML view)."""
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
    return Response(
        "Unauthorized",
        401,
        media_type="text/plain",
        headers={"WWW-Authenticate": 'Basic realm="tempmail"'},
    )


async def list_messages(request: Request) -> Response:
    found = await mailbox(request)
    if isinstance(found, Response):
        return found
    paging = start_limit(request)
    if isinstance(paging, Response):
        return paging
    start, limit = paging
    rows, total, unread = await queries.page(state(request).pool, found[0], start, limit)
    return json_response(shapes.mailpit_page(rows, start, total, unread))


async def search(request: Request) -> Response:
    found = await mailbox(request)
    if isinstance(found, Response):
        return found
    query = request.query_params.get("query", "").strip()
    if not query:
        return text("Error: no search query", 400)
    terms = search_terms(query)
    if len(terms) > MAX_SEARCH_TERMS:
        # Each term is one more ILIKE over the mailbox: thousands would hold
        # one of the API's few database connections for seconds.
        return text(f"Error: at most {MAX_SEARCH_TERMS} search terms", 400)
    paging = start_limit(request)
    if isinstance(paging, Response):
        return paging
    start, limit = paging
    rows, matching, matching_unread, total, unread = await queries.search(
        state(request).pool, found[0], terms, start, limit
    )
    return json_response(shapes.mailpit_page(rows, start, total, unread, matching, matching_unread))


async def body_fields(request: Request) -> dict[str, Any] | None:
    """A JSON body, or a form-encoded one (keys as sent); {} when empty; None if unreadable."""
    raw = await request.body()
    if not raw.strip():
        return {}
    content_type = request.headers.get("content-type", "")
    if "application/x-www-form-urlencoded" in content_type:
        pairs = [(k, v) for k, values in parse_qs(raw.decode("utf-8", "replace")).items()
                 for v in values]  # fmt: skip
    else:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):  # deep nesting: unreadable too
            return None
        if not isinstance(data, dict):
            return None
        pairs = list(data.items())
    if not access.storable(pairs):
        return None
    fields: dict[str, Any] = {}
    for key, value in pairs:
        if key.lower() == "ids":
            fields.setdefault("IDs", []).extend(value if isinstance(value, list) else [value])
        elif key.lower() == "read":
            fields["Read"] = value is True or str(value).lower() in ("true", "1", "yes", "on")
    return fields


def uuids(values: Any) -> list[uuid.UUID]:
    found = []
    for value in values if isinstance(values, list) else []:
        try:
            found.append(uuid.UUID(str(value)))
        except ValueError:
            continue
    return found


async def set_read(request: Request) -> Response:
    found = await mailbox(request)
    if isinstance(found, Response):
        return found
    fields = await body_fields(request)
    if fields is None:
        return text("invalid request body", 400)
    ids = fields.get("IDs") or []
    await queries.set_seen(
        state(request).pool, found[0], uuids(ids) if ids else None, bool(fields.get("Read"))
    )
    return text("ok")


async def delete_messages(request: Request) -> Response:
    found = await mailbox(request)
    if isinstance(found, Response):
        return found
    fields = await body_fields(request)
    ids = (fields or {}).get("IDs") or []
    # As Mailpit: no IDs (or an unreadable body) deletes all of this address.
    await queries.delete_mail(state(request).pool, found[0], uuids(ids) if ids else None)
    return text("ok")


async def _message_row(request: Request, address: str) -> Any:
    ident = request.path_params["id"]
    pool = state(request).pool
    if ident == "latest":
        return await queries.latest(pool, address)
    try:
        return await queries.message(pool, address, uuid.UUID(ident))
    except ValueError:
        return None


async def get_message(request: Request) -> Response:
    found = await mailbox(request)
    if isinstance(found, Response):
        return found
    row = await _message_row(request, found[0])
    if row is None:
        return not_found()
    raw = await raw_of(request, row)
    header_fields = mime.headers(raw) if raw else {}
    parts = mime.parts(mime.parse(raw)) if raw else []
    await queries.set_seen(state(request).pool, found[0], [row["id"]], True)
    body = shapes.mailpit_message(row, header_fields, parts)
    return json_response(body)


async def _raw_message(request: Request) -> tuple[Any, bytes] | Response:
    """The message row named by the path and its raw bytes, or the response to send."""
    found = await mailbox(request)
    if isinstance(found, Response):
        return found
    row = await _message_row(request, found[0])
    raw = await raw_of(request, row)
    if raw is None:
        return not_found()
    return row, raw


async def get_raw(request: Request) -> Response:
    found = await _raw_message(request)
    if isinstance(found, Response):
        return found
    row, raw = found
    return download(raw, "text/plain; charset=utf-8", f"{row['id']}.eml")


async def get_headers(request: Request) -> Response:
    found = await _raw_message(request)
    if isinstance(found, Response):
        return found
    return json_response(mime.headers(found[1]))


async def get_part(request: Request) -> Response:
    found = await _raw_message(request)
    if isinstance(found, Response):
        return found
    content = mime.part_content(mime.parse(found[1]), request.path_params["part"])
    if content is None:
        return not_found()
    part, data = content
    return download(data, mime.download_type(part), part.filename or f"part-{part.part_id}")


# The view of a message's HTML: nothing runs, nothing loads but what is inline
# (and remote images when asked); links may open a new, unsandboxed tab.
VIEW_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:{remote}; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'self'; "
    "sandbox allow-popups allow-popups-to-escape-sandbox"
)


async def view_html(request: Request) -> Response:
    """GET /mailpit/{address}/view/{ID}.html[?remoteImages=1]: Mailpit's HTML view."""
    found = await mailbox(request, query_token=True)
    if isinstance(found, Response):
        return found
    row = await _message_row(request, found[0])
    if row is None:
        return not_found()
    remote = request.query_params.get("remoteImages", "").lower() in ("1", "true", "yes")
    csp = VIEW_CSP.format(remote=" http: https:" if remote else "")
    return HTMLResponse(
        shapes.html_view(row, remote),
        headers={**DOWNLOAD_HEADERS, "Content-Security-Policy": csp},
    )


PREFIX = "/mailpit/{address}/api/v1"
routes = [
    Route(f"{PREFIX}/messages", list_messages, methods=["GET"]),
    Route(f"{PREFIX}/messages", set_read, methods=["PUT"]),
    Route(f"{PREFIX}/messages", delete_messages, methods=["DELETE"]),
    Route(f"{PREFIX}/search", search, methods=["GET"]),
    Route(f"{PREFIX}/message/{{id}}", get_message, methods=["GET"]),
    Route(f"{PREFIX}/message/{{id}}/raw", get_raw, methods=["GET"]),
    Route(f"{PREFIX}/message/{{id}}/headers", get_headers, methods=["GET"]),
    Route(f"{PREFIX}/message/{{id}}/part/{{part}}", get_part, methods=["GET"]),
    Route("/mailpit/{address}/view/{id}.html", view_html, methods=["GET"]),
]
