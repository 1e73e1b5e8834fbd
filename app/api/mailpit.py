"""Mailpit's API v1, one mailbox per address, under /mailpit/{address}/api/v1/.

Each address is one Mailpit mailbox: the routes, parameters, field names
and replies are Mailpit's (its Go handlers in server/apiv1, and its
swagger where they agree), so a Mailpit client works with its base URL set
to /mailpit/{address}. Errors are text/plain, as Mailpit writes them. This
module: the messages, search and message routes, and the table of every
Mailpit route (tags in mailpit_tags.py, the views and parts in
mailpit_views.py, the rest in mailpit_other.py).

Beyond Mailpit: PUT/DELETE messages also accept a form-encoded body (`ids`,
`Read`), which is what the mailpit-api-client library sends; Mailpit itself
would read such a DELETE as "delete everything". ?limit is at most
MAX_LIMIT (0, Mailpit's "no limit", lists that many).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import (
    mailpit_other,
    mailpit_tags,
    mailpit_views,
    queries_mail,
    queries_search,
    search,
    shapes_mailpit,
)
from .context import download, json_response, raw_of, state
from .mailpit_common import (
    BodyError,
    bad_request,
    body_fields,
    mailbox,
    missing,
    parsed_of,
    path_message,
    start_limit,
    text,
    uuids,
)


async def list_messages(request: Request) -> Response:
    found = await mailbox(request)
    if isinstance(found, Response):
        return found
    start, limit = start_limit(request)
    rows, counts = await queries_mail.listing(state(request).reads, found[0], (), start, limit)
    return json_response(shapes_mailpit.page(rows, start, counts))


async def _searched(request: Request) -> tuple[str, list[queries_search.Term]] | Response:
    """(the address, the terms of ?query=), or the refusal or Mailpit's 400."""
    found = await mailbox(request)
    if isinstance(found, Response):
        return found
    query = request.query_params.get("query", "").strip()
    if not query:
        return bad_request("Error: no search query")
    try:
        return found[0], search.terms(query)
    except search.Refused as refused:
        return bad_request(str(refused))


async def search_messages(request: Request) -> Response:
    found = await _searched(request)
    if isinstance(found, Response):
        return found
    start, limit = start_limit(request)
    rows, counts = await queries_mail.listing(state(request).reads, *found, start, limit)
    return json_response(shapes_mailpit.page(rows, start, counts))


async def delete_search(request: Request) -> Response:
    """DELETE search?query=: every message the search matches (Mailpit's
    handler answers `ok` in text/plain, where its spec says JSON)."""
    found = await _searched(request)
    if isinstance(found, Response):
        return found
    address, terms = found
    if terms:  # a query of only spaces between quotes matches nothing to delete
        await queries_mail.delete_mail(state(request).pool, address, None, terms)
    return text("ok")


async def set_read(request: Request) -> Response:
    """PUT messages {"IDs": [...]} or {"Search": "..."} (neither: all), "Read"."""
    found = await mailbox(request)
    if isinstance(found, Response):
        return found
    try:
        fields = await body_fields(request, {"Read": bool, "IDs": list, "Search": str})
        terms = search.terms(fields["Search"])
    except (BodyError, search.Refused) as refused:
        return bad_request(str(refused))
    ids = fields["IDs"]
    if ids and fields["Search"]:
        return bad_request("You may specify either IDs or a search query, not both")
    if fields["Search"] and not terms:
        return text("ok")  # a search of nothing matches nothing
    selected = uuids(ids) if ids else None
    await queries_mail.set_seen(state(request).pool, found[0], selected, fields["Read"], terms)
    return text("ok")


async def delete_messages(request: Request) -> Response:
    found = await mailbox(request)
    if isinstance(found, Response):
        return found
    try:
        ids = (await body_fields(request, {"IDs": list}))["IDs"]
    except BodyError:
        ids = []  # as Mailpit: no IDs (or an unreadable body) deletes all of this address
    await queries_mail.delete_mail(state(request).pool, found[0], uuids(ids) if ids else None)
    return text("ok")


async def get_message(request: Request) -> Response:
    found = await path_message(request)
    if isinstance(found, Response):
        return found
    address, row = found
    parsed = await parsed_of(request, row)
    await queries_mail.set_seen(state(request).pool, address, [row["id"]], True)
    cids = shapes_mailpit.cid_map(parsed.parts, None) if parsed else {}
    return json_response(shapes_mailpit.message(row, parsed, cids))


async def get_raw(request: Request) -> Response:
    found = await path_message(request)
    if isinstance(found, Response):
        return found
    row = found[1]
    raw = await raw_of(request, row)
    if raw is None:
        return missing(request.path_params["id"])
    return download(raw, "text/plain; charset=utf-8", f"{row['id']}.eml")


async def get_headers(request: Request) -> Response:
    found = await path_message(request)
    if isinstance(found, Response):
        return found
    parsed = await parsed_of(request, found[1])
    if parsed is None:
        return missing(request.path_params["id"])
    return json_response(parsed.headers)


PREFIX = "/mailpit/{address}/api/v1"
routes = [
    Route(f"{PREFIX}/messages", list_messages, methods=["GET"]),
    Route(f"{PREFIX}/messages", set_read, methods=["PUT"]),
    Route(f"{PREFIX}/messages", delete_messages, methods=["DELETE"]),
    Route(f"{PREFIX}/search", search_messages, methods=["GET"]),
    Route(f"{PREFIX}/search", delete_search, methods=["DELETE"]),
    Route(f"{PREFIX}/message/{{id}}", get_message, methods=["GET"]),
    Route(f"{PREFIX}/message/{{id}}/raw", get_raw, methods=["GET"]),
    Route(f"{PREFIX}/message/{{id}}/headers", get_headers, methods=["GET"]),
    *mailpit_tags.routes(PREFIX),
    *mailpit_views.routes(PREFIX),
    *mailpit_other.routes(PREFIX),
]
