"""The Mercure hub route: server-sent events of new mail at /.well-known/mercure.

Topics: mail.tm's `/accounts/{id}` (bearer token in the header or
`?authorization=`) and, our extension, `/addresses/{address}` (an open
address needs no credential). Events are mail.tm's: for each new message
the Message, then the Account with its new `used` when the address has one.

Access is decided when the stream opens, and again while it runs: before a
stream delivers anything its decision is taken again (access.decide, on
what the database says then) if it is older than RECHECK_SECONDS, or at
once when the address's access may have changed (events.Signal.RECHECK: an
account of the address created, deleted, given a new password or its
tokens revoked, by any API process or the command line; the address joining or leaving
private_email). When the answer is no longer "allow" the stream ends,
with no further event.

The bound: a stream delivers nothing its credential could not read
RECHECK_SECONDS (2 s) earlier. Announced changes (every write to
`accounts` made through this code, while the API LISTENs) stop a stream
at once; others (SQL on `accounts`, or announced while the LISTEN
connection was down) from its first event RECHECK_SECONDS after its last
decision; a new private_email row within PRIVATE_REFRESH (private.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote, urlsplit

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import policy
from . import access, mailtm, queries, shapes
from .context import (
    SAFE_HEADERS,
    Reader,
    State,
    authenticate,
    base_url,
    json_response,
    reader_for,
    state,
)
from .events import Delivery, Signal, Stream

log = logging.getLogger("app.api.events")

PING_SECONDS = 15
RECHECK_SECONDS = 2.0  # how long a stream's "allow" is trusted without asking again
# Topics of one stream. Each costs queries when the stream opens and at every
# recheck, so one request must not subscribe to thousands; clients use one.
MAX_TOPICS = 20


def topic_target(topic: str) -> tuple[str, str] | None:
    """("accounts", id) or ("addresses", address) for a topic (a path or a full IRI)."""
    path = urlsplit(topic).path if "://" in topic else topic
    for kind in ("accounts", "addresses"):
        marker = f"/{kind}/"
        if path.startswith(marker) and len(path) > len(marker):
            return kind, unquote(path[len(marker) :])
    return None


def mercure_events(delivery: Delivery, base: str, account: Any | None) -> list[ServerSentEvent]:
    """What mail.tm's hub publishes for one new message: the Message, then the
    Account with its new `used` (when the address has an account)."""
    row = delivery.row
    account_id = str(account["id"]) if account is not None else None
    cached = delivery.formatted.get((base, account_id))
    if cached is not None:
        return cached
    message = shapes.message_summary(row, base, account_id, ld=True)
    events = [ServerSentEvent(data=json.dumps(message), id=f"urn:uuid:{row['id']}")]
    if account is not None:
        body = shapes.account(account, delivery.used, True, mailtm.QUOTA)
        event_id = uuid.uuid5(row["id"], "account")
        events.append(ServerSentEvent(data=json.dumps(body), id=f"urn:uuid:{event_id}"))
    delivery.formatted[(base, account_id)] = events
    return events


# Who may go on reading ---------------------------------------------------------------


@dataclasses.dataclass
class Grant:
    """What an open stream may read, and when that was last decided."""

    cred: access.Credential
    # address -> the account id its topic named (None: an /addresses/ topic)
    topics: dict[str, str | None]
    # address -> its account row, for the Account events (when the reader owns it)
    accounts: dict[str, Any]
    decided_at: float  # time.monotonic() when the last decision began
    generation: int  # the stream's generation when it began

    def fresh(self, stream: Stream) -> bool:
        return (
            stream.generation == self.generation
            and time.monotonic() - self.decided_at < RECHECK_SECONDS
        )


def allows(reader: Reader, account_id: str | None) -> bool:
    """Does `reader` read the topic (an account topic: that very account)?"""
    if reader.decision is not access.Decision.ALLOW:
        return False
    return account_id is None or (
        reader.account is not None and str(reader.account.id) == account_id
    )


async def still_allowed(ctx: State, grant: Grant, stream: Stream) -> bool:
    """Decide again unless the last decision is fresh; False once any topic is refused."""
    while not grant.fresh(stream):
        generation, started = stream.generation, time.monotonic()
        for address, account_id in grant.topics.items():
            reader = await reader_for(ctx, address, grant.cred)
            if not allows(reader, account_id):
                return False
            grant.accounts[address] = reader.account.row if reader.account else None
        grant.generation, grant.decided_at = generation, started
    return True


# The route -------------------------------------------------------------------------


async def open_topic(
    ctx: State, topic: str, cred: access.Credential
) -> tuple[str, str | None, Reader] | Response:
    """(address, account id the topic names or None, the reader) of an allowed
    topic, or the refusal to send."""
    target = topic_target(topic)
    if target is None:
        return json_response(shapes.error(400, f"Unsupported topic {topic!r}"), 400)
    kind, value = target
    if kind == "accounts":
        account = await authenticate(ctx, cred)
        if account is None:
            return json_response(shapes.unauthorized("JWT Token not found"), 401)
        if str(account.id) != value:
            return json_response(shapes.error(403, "Forbidden"), 403)
        return account.address, value, Reader(access.Decision.ALLOW, account)
    address = policy.normalize_address(value)
    reader = await reader_for(ctx, address, cred)
    if reader.decision is access.Decision.FORBIDDEN:
        return json_response(shapes.error(403, "Forbidden"), 403)
    if reader.decision is not access.Decision.ALLOW:
        return json_response(shapes.unauthorized("JWT Token not found"), 401)
    return address, None, reader


async def mercure(request: Request) -> Response:
    """GET /.well-known/mercure?topic=... (one to MAX_TOPICS topics). The stream is
    subscribed before the response starts, so nothing committed after the
    headers is missed."""
    ctx = state(request)
    topics = request.query_params.getlist("topic")
    if not topics:
        return json_response(shapes.error(400, 'Missing "topic" parameter'), 400)
    if len(topics) > MAX_TOPICS:
        return json_response(shapes.error(400, f"At most {MAX_TOPICS} topics per request"), 400)
    cred = access.credential(
        request.headers.get("authorization"), request.query_params.get("authorization")
    )
    grant = Grant(cred, {}, {}, time.monotonic(), 0)
    for topic in topics:
        opened = await open_topic(ctx, topic, cred)
        if isinstance(opened, Response):
            return opened
        address, account_id, reader = opened
        grant.topics[address] = grant.topics.get(address) or account_id
        grant.accounts[address] = reader.account.row if reader.account else None
    stream = ctx.hub.subscribe(tuple(grant.topics))
    log.debug("[events] stream subscribed (%d open)", ctx.hub.stream_count)
    return EventSourceResponse(
        stream_events(ctx, stream, base_url(request), grant),
        ping=PING_SECONDS,
        headers=SAFE_HEADERS,
    )


async def stream_events(
    ctx: State, stream: Stream, base: str, grant: Grant
) -> AsyncIterator[ServerSentEvent]:
    """The events of `stream` while `grant` holds; it ends when it does not."""
    try:
        while True:
            item = await stream.next()
            if item is Signal.END:
                return
            try:
                if not await still_allowed(ctx, grant, stream):
                    log.info("[events] stream ended: its credential no longer reads its topic")
                    return
            except queries.DATABASE_ERRORS as error:
                log.warning("[events] stream ended: cannot decide its access again: %r", error)
                return
            if isinstance(item, Delivery):
                account = grant.accounts.get(item.row["mailbox_owner"])
                for event in mercure_events(item, base, account):
                    yield event
    finally:
        ctx.hub.unsubscribe(stream)


routes = [Route("/.well-known/mercure", mercure, methods=["GET"])]
