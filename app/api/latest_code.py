"""GET /addresses/{address}/code/latest: an address's newest one-time codes
and verification link, for scripts (README "Codes and links").

Without `?wait`, the newest message of the address that carries a code or
a verification link (404 when none does). With `?wait=N` (seconds, at most
WAIT_MAX), the NEXT such message: the request subscribes to the event hub
(events.py: the writer's NOTIFY, no polling) and answers as soon as one is
committed, or 204 No Content after N seconds (a client that hangs up
ends its wait at once). Start the wait before the
mail is sent (or call once without `wait` afterwards): a message committed
before the request is not "next".

Who may ask is who may read the address's mail (access.decide, as the
Mailpit routes and the page's event stream decide): an open address needs
nothing; a claimed or private one its own Bearer token (or HTTP basic);
a credential for another address is refused (403). A wait is decided
again before it answers, so a credential revoked meanwhile gets nothing.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..policy import address_problem, normalize_address
from . import access, queries_mail, queries_search, shapes
from .context import SAFE_HEADERS, State, json_response, reader_for, state
from .events import Signal, Stream

log = logging.getLogger("app.api.codes")

WAIT_MAX = 60.0  # seconds a request may wait for the next code
# Search term of a message with a code or a verification link (queries_search.FLAG_CONDITIONS).
WITH_CODE = queries_search.Term("code", "")


def answer(row: Any) -> dict[str, Any]:
    """The body: the message (id, subject, sender, when) and what it offers."""
    found = shapes.codes(row)
    return {
        "id": str(row["id"]),
        "subject": row.get("subject") or "",
        "from": shapes.sender(row)[1],
        "createdAt": shapes.iso(shapes.arrived(row)),
        "code": found[0] if found else None,
        "codes": found,
        "verifyLink": shapes.verify_link(row),
    }


def carries_code(row: Any) -> bool:
    return bool(shapes.codes(row)) or shapes.verify_link(row) is not None


def wait_seconds(text: str | None) -> float | None:
    """?wait's seconds, bounded by WAIT_MAX (0 when absent); None if not a number >= 0."""
    if text is None or text == "":
        return 0.0
    try:
        seconds = float(text)
    except ValueError:
        return None
    return min(seconds, WAIT_MAX) if math.isfinite(seconds) and seconds >= 0 else None


async def refusal(ctx: State, address: str, cred: access.Credential) -> Response | None:
    """The answer refusing this credential the address's mail, or None: allowed."""
    reader = await reader_for(ctx, address, cred)
    if reader.decision is access.Decision.ALLOW:
        return None
    if reader.decision is access.Decision.FORBIDDEN:
        return json_response(shapes.error(403, "These credentials are for another address"), 403)
    return json_response(shapes.unauthorized("JWT Token not found"), 401)


async def next_with_code(stream: Stream, seconds: float) -> Any | None:
    """The first row delivered to `stream` that carries a code or a link
    within `seconds`; None if none did."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            item = await asyncio.wait_for(stream.next(), left)
        except TimeoutError:
            return None
        if item is Signal.END:
            return None
        if not isinstance(item, Signal) and carries_code(item.row):
            return item.row
    return None


async def client_left(request: Request) -> None:
    """Return once the client has closed the connection (ASGI http.disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def wait_for_code(request: Request, stream: Stream, seconds: float) -> Any | None:
    """next_with_code, given up as soon as the client leaves (its stream goes at once)."""
    waiting = asyncio.ensure_future(next_with_code(stream, seconds))
    leaving = asyncio.ensure_future(client_left(request))
    try:
        await asyncio.wait([waiting, leaving], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiting, leaving):
            task.cancel()
    if not waiting.done() or waiting.cancelled():
        log.debug("[codes] a waiting client left")
        return None
    return waiting.result()


async def latest_code(request: Request) -> Response:
    ctx = state(request)
    address = normalize_address(request.path_params["address"])
    if address_problem(address):
        return json_response(shapes.error(404, "Not Found"), 404)
    seconds = wait_seconds(request.query_params.get("wait"))
    if seconds is None:
        return json_response(shapes.error(400, "wait: a number of seconds, 0 or more"), 400)
    cred = access.credential(request.headers.get("authorization"))
    refused = await refusal(ctx, address, cred)
    if refused is not None:
        return refused
    if not seconds:
        # The primary, not a read replica: a lagging one would give a script
        # the code of the mail before the one it just asked for.
        row = await queries_mail.latest(ctx.pool, address, [WITH_CODE])
        if row is None:
            return json_response(shapes.error(404, "No message with a code or a link yet"), 404)
        return json_response(answer(row))
    stream = ctx.hub.subscribe((address,))
    log.debug("[codes] a request waits up to %.0f s for the next code", seconds)
    try:
        row = await wait_for_code(request, stream, seconds)
    finally:
        ctx.hub.unsubscribe(stream)
    refused = await refusal(ctx, address, cred)  # it may have changed meanwhile
    if refused is not None:
        return refused
    if row is None:
        return Response(status_code=204, headers=SAFE_HEADERS)
    return json_response(answer(row))


routes = [Route("/addresses/{address}/code/latest", latest_code, methods=["GET"])]
