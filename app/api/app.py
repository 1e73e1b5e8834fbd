"""The read side's process: Starlette app, its routes, the rate limit, start and stop.

`python -m app api` runs `serve(settings)`: uvicorn (httptools) on uvloop,
on API_BIND:API_PORT. Start-up: database URL (the embedded PostgreSQL if
DATABASE_URL is unset), a small pool of its own, the schema (migration 010
makes `accounts`), the private_email list (private.py; start-up waits for
its first load), the token secret, the LISTEN hub. The long-lived tasks of
this process are the hub and the private_email refresh. Stop (SIGTERM/SIGINT,
handled by uvicorn): stop accepting, give requests and streams UVICORN_GRACE
seconds, cancel the tasks, close the pool.

Routes: mail.tm's at the root (mailtm.py), Mailpit's per address
(mailpit.py), and the Mercure hub at /.well-known/mercure (here).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import resource
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote, urlsplit

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import embedded, policy
from ..config import Settings
from . import access, mailpit, mailtm, queries, shapes
from .context import (
    SAFE_HEADERS,
    State,
    authenticate,
    base_url,
    json_response,
    reader_for,
    state,
)
from .events import Delivery, Hub, Stream
from .private import PrivateAddresses

log = logging.getLogger("app.api")

POOL_SIZE = 4
UVICORN_GRACE = 3
MAX_BODY = 64 * 1024  # bytes of a request body (JSON of a few fields)
PING_SECONDS = 15


# Rate limit ------------------------------------------------------------------------------


class RateLimit:
    """API_RATE_LIMIT requests per second per client address (token bucket,
    bursts of the same size), as mail.tm's 8/s; over it: 429. Also refuses
    bodies declared larger than MAX_BODY (413)."""

    MAX_CLIENTS = 100_000

    def __init__(self, app: ASGIApp, rate: float) -> None:
        self.app = app
        self.rate = rate
        self.burst = max(1.0, rate)
        self.buckets: dict[str, tuple[float, float]] = {}

    def allow(self, client: str, now: float) -> bool:
        tokens, last = self.buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if len(self.buckets) >= self.MAX_CLIENTS and client not in self.buckets:
            self._prune(now)
        if tokens < 1:
            self.buckets[client] = (tokens, now)
            return False
        self.buckets[client] = (tokens - 1, now)
        return True

    def _prune(self, now: float) -> None:
        full = self.burst / self.rate  # seconds after which a bucket is full again
        for client, (_, last) in list(self.buckets.items()):
            if now - last > full:
                del self.buckets[client]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("", 0))[0]
        if not self.allow(client, time.monotonic()):
            body = {"code": 429, "message": "Too Many Requests"}
            response = json_response(body, 429)
            response.headers["Retry-After"] = "1"
            await response(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > MAX_BODY:
                await json_response(shapes.error(413, "Request body too large"), 413)(
                    scope, receive, send
                )
                return
        await self.app(scope, receive, send)


# Mercure ------------------------------------------------------------------------------------


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


async def mercure(request: Request) -> Response:
    """GET /.well-known/mercure?topic=/accounts/{id} (mail.tm; bearer token in the
    header or `?authorization=`) and, our extension, topic=/addresses/{address}
    (open addresses need no token). The stream is subscribed before the
    response starts, so nothing committed after the headers is missed."""
    ctx = state(request)
    topics = request.query_params.getlist("topic")
    if not topics:
        return json_response(shapes.error(400, 'Missing "topic" parameter'), 400)
    cred = access.credential(
        request.headers.get("authorization"), request.query_params.get("authorization")
    )
    accounts: dict[str, Any] = {}  # address -> its account row, for the Account events
    for topic in topics:
        target = topic_target(topic)
        if target is None:
            return json_response(shapes.error(400, f"Unsupported topic {topic!r}"), 400)
        kind, value = target
        if kind == "accounts":
            account = await authenticate(request, cred)
            if account is None:
                return json_response(shapes.unauthorized("JWT Token not found"), 401)
            if str(account.id) != value:
                return json_response(shapes.error(403, "Forbidden"), 403)
            accounts[account.address] = account.row
            continue
        address = policy.normalize_address(value)
        reader = await reader_for(request, address, cred)
        if reader.decision is access.Decision.FORBIDDEN:
            return json_response(shapes.error(403, "Forbidden"), 403)
        if reader.decision is not access.Decision.ALLOW:
            return json_response(shapes.unauthorized("JWT Token not found"), 401)
        accounts[address] = reader.account.row if reader.account else None
    stream = ctx.hub.subscribe(tuple(accounts))
    log.debug("[events] stream subscribed (%d open)", ctx.hub.stream_count)
    base = base_url(request)
    return EventSourceResponse(
        _stream_events(ctx.hub, stream, base, accounts),
        ping=PING_SECONDS,
        headers=SAFE_HEADERS,
    )


async def _stream_events(
    hub: Hub, stream: Stream, base: str, accounts: dict[str, Any]
) -> AsyncIterator[ServerSentEvent]:
    try:
        while True:
            delivery = await stream.queue.get()
            if delivery is None:
                return
            account = accounts.get(delivery.row["mailbox_owner"])
            for event in mercure_events(delivery, base, account):
                yield event
    finally:
        hub.unsubscribe(stream)


# The app -----------------------------------------------------------------------------------


async def not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "Internal Server Error"
    return json_response(shapes.error(status, str(detail)), status, ld=True)


def build(settings: Settings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        url = embedded.database_url(settings)
        pool = await queries.create_pool(url, POOL_SIZE)
        await queries.install(pool)
        hub = Hub(url, pool)
        private = PrivateAddresses(settings, pool)
        await private.load()
        app.state.api = State(
            settings=settings,
            pool=pool,
            hub=hub,
            private=private,
            secret=access.load_secret(settings.api_secret, settings.data_dir),
            shape=await queries.schema(pool),
            started=datetime.datetime.now(datetime.UTC),
        )
        tasks = [
            asyncio.create_task(hub.run(), name="api-listen"),
            asyncio.create_task(private.keep_fresh(lambda _changed: None), name="api-private"),
        ]
        log.info(
            "[api] serving on http://%s:%d (access %s)",
            settings.api_bind,
            settings.api_port,
            settings.api_access,
        )
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await asyncio.wait_for(pool.close(), 5)

    app = Starlette(
        routes=[
            *mailtm.routes,
            *mailpit.routes,
            Route("/.well-known/mercure", mercure, methods=["GET"]),
        ],
        exception_handlers={HTTPException: not_found, Exception: not_found},
        lifespan=lifespan,
    )
    return RateLimit(app, settings.api_rate_limit)  # type: ignore[return-value]


def raise_fd_limit() -> None:
    """Lift the soft open-files limit to the hard one: each stream is a descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def serve(settings: Settings) -> int:
    import uvicorn
    import uvloop

    raise_fd_limit()
    config = uvicorn.Config(
        build(settings),
        host=settings.api_bind,
        port=settings.api_port,
        http="httptools",
        loop="none",
        lifespan="on",
        access_log=False,
        server_header=False,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=UVICORN_GRACE,
    )
    server = uvicorn.Server(config)
    uvloop.run(server.serve())
    return 0 if server.started else 1
