"""The read side's process: Starlette app, its routes, the rate and body
limits, start and stop.

`python -m app api` runs `serve(settings)`: uvicorn (httptools) on uvloop,
on API_BIND:API_PORT. Start-up, each failure one line and exit 1: bind the
port (before anything else: a port in use is said at once, naming
API_PORT), the database URL (API_DATABASE_URL, else DATABASE_URL, else the
embedded PostgreSQL), one connection that proves it and installs the schema
if it is not current (migrations 010 to 012 make `accounts`; a role
without DDL needs `init-db` run first); if that URL is a read replica,
the primary's (replica.py). Then, in the lifespan: a small pool of its
own (two with a replica: reads there, the rest on the primary), the
private_email list (private.py; start-up waits for its first load), the
token secret, the LISTEN hub (waited for, up to HUB_WAIT), the MIME worker
processes (mimework.py, started in the background). Only once uvicorn
listens does it say where it serves. The long-lived tasks of this process
are the hub and the private_email refresh. Stop (SIGTERM/SIGINT, handled
by uvicorn): stop accepting, give requests and streams UVICORN_GRACE
seconds, cancel the tasks, stop the worker processes, close the pools,
release the embedded PostgreSQL.

Routes: mail.tm's at the root (mailtm.py), Mailpit's per address
(mailpit.py), the Mercure hub at /.well-known/mercure (mercure.py), and
the inbox page at / and /inbox/{address} (page.py, files in static/).
Every error is answered in its route family's form (`error_answer`):
text/plain under /mailpit/, as Mailpit's handlers write them; JSON (API
Platform's, mail.tm's) everywhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import resource
import socket
import time
from collections.abc import AsyncIterator

import asyncpg
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import db_connect, embedded, listening
from ..config import Settings
from . import (
    access,
    latest_code,
    mailpit,
    mailtm,
    mercure,
    page,
    queries,
    replica,
    shapes,
    webhooks,
)
from .context import State, json_response
from .events import Hub
from .mimework import MimeWork
from .private import PrivateAddresses

log = logging.getLogger("app.api")

POOL_SIZE = 4
UVICORN_GRACE = 3
HUB_WAIT = 10.0  # seconds start-up waits for the LISTEN connection before going on
MAX_BODY = 64 * 1024  # bytes of a request body (JSON of a few fields)
TOO_LARGE = "Request body too large"
NUL_IN_URL = "NUL character in the URL"
MAILPIT = "/mailpit/"
# Mailpit's texts for what its router answers itself (Go's net/http).
MAILPIT_TEXTS = {404: "404 page not found", 405: "Method Not Allowed"}


def error_answer(path: str, status: int, detail: str) -> Response:
    """An error in the form of the route family `path` belongs to."""
    if path.startswith(MAILPIT):
        return PlainTextResponse(
            MAILPIT_TEXTS.get(status, detail),
            status,
            headers={"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"},
        )
    return json_response(shapes.error(status, detail), status, ld=True)


# Rate limit ------------------------------------------------------------------------------


class RateLimit:
    """API_RATE_LIMIT requests per second per client address (token bucket,
    bursts of the same size), as mail.tm's 8/s; over it: 429. The client
    address is the peer's, or what a proxy in API_TRUSTED_PROXIES forwarded
    (uvicorn rewrites it before this runs; see serve). The inbox
    page's own files are not counted: they cost no database work, and a page
    load is several."""

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
        if not page.is_free(scope["path"]) and not self.allow(client, time.monotonic()):
            response = (
                error_answer(scope["path"], 429, "Too Many Requests")
                if scope["path"].startswith(MAILPIT)
                else json_response({"code": 429, "message": "Too Many Requests"}, 429)
            )
            response.headers["Retry-After"] = "1"
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class BodyLimit:
    """At most MAX_BODY bytes of request body, on every route; over it: 413.

    A declared Content-Length is refused before anything is read. A body
    without one (chunked transfer-encoding) is counted as it is read: the
    read that passes the limit raises HTTPException(413), which the app's
    handler answers as it answers every error, and nothing more is read.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await error_answer(scope["path"], 413, TOO_LARGE)(scope, receive, send)
                return
        read = 0

        async def counted() -> Message:
            nonlocal read
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > self.limit:
                    raise HTTPException(413, TOO_LARGE)
            return message

        await self.app(scope, counted, send)


class NoNul:
    """A NUL in the path or the query string (`%00`) is a 400 on every route:
    no address, id, topic or search term holds one, and PostgreSQL's text
    refuses it (it was a 500 wherever such a value reached a query)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and ("\x00" in scope["path"] or b"%00" in scope["query_string"]):
            await error_answer(scope["path"], 400, NUL_IN_URL)(scope, receive, send)
            return
        await self.app(scope, receive, send)


# The app -----------------------------------------------------------------------------------


async def not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "Internal Server Error"
    answer = error_answer(request.url.path, status, str(detail))
    if isinstance(exc, HTTPException) and exc.headers:
        answer.headers.update(exc.headers)  # 405's Allow
    return answer


def build(settings: Settings, routes: replica.Routes) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        api = await start_state(settings, routes)
        app.state.api = api
        tasks = start_tasks(api)
        with contextlib.suppress(TimeoutError):  # "ready" includes live push, if it comes
            await asyncio.wait_for(api.hub.connected.wait(), HUB_WAIT)
        try:
            yield
        finally:
            await stop(api, tasks)

    app = Starlette(
        routes=[
            *mailtm.routes,
            *webhooks.routes,
            *mailpit.routes,
            *mercure.routes,
            *page.routes,
            *latest_code.routes,
        ],
        exception_handlers={HTTPException: not_found, Exception: not_found},
        lifespan=lifespan,
    )
    return RateLimit(NoNul(BodyLimit(app)), settings.api_rate_limit)  # type: ignore[return-value]


async def open_pools(
    settings: Settings, routes: replica.Routes
) -> tuple[asyncpg.Pool, asyncpg.Pool]:
    """The primary's pool and the one reads use (the primary's, without a replica)."""
    pooled = db_connect.looks_pooled(routes.primary, settings.database_pooled)
    pool = await queries.create_pool(routes.primary, POOL_SIZE, pooled)
    reads = (
        await queries.create_pool(
            routes.reads,
            POOL_SIZE,
            db_connect.looks_pooled(routes.reads, settings.database_pooled),
        )
        if routes.fallback
        else pool
    )
    # LISTEN needs a session: DATABASE_DIRECT_URL when set (README: poolers).
    if pooled and not settings.database_direct_url:
        log.warning(
            "[events] the database URL is a transaction-mode pooler and "
            "DATABASE_DIRECT_URL is empty: live events may be missed"
        )
    return pool, reads


async def start_state(settings: Settings, routes: replica.Routes) -> State:
    """What the routes share: the pools, the hub, the private_email list (its
    first load awaited), the MIME workers, the token secret, the schema's shape."""
    pool, reads = await open_pools(settings, routes)
    hub = Hub(routes.listen, pool)
    private = PrivateAddresses(settings, pool)
    await private.load()
    mime_work = MimeWork()
    mime_work.warm()
    return State(
        settings=settings,
        pool=pool,
        reads=reads,
        hub=hub,
        private=private,
        secret=access.load_secret(settings.api_secret, settings.data_dir),
        shape=await queries.schema(pool),
        started=datetime.datetime.now(datetime.UTC),
        mime=mime_work,
    )


def start_tasks(api: State) -> list[asyncio.Task[None]]:
    """The process's long-lived tasks: the LISTEN hub and the private_email refresh."""
    return [
        asyncio.create_task(api.hub.run(), name="api-listen"),
        asyncio.create_task(api.private.keep_fresh(api.hub.access_changed), name="api-private"),
    ]


async def stop(api: State, tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the tasks, stop the MIME workers, close the pools, release the database."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await api.mime.close()
    await asyncio.wait_for(api.pool.close(), 5)
    if api.reads is not api.pool:
        await asyncio.wait_for(api.reads.close(), 5)
    # Here, not at exit: uvicorn ends the process with the stop signal it caught.
    embedded.release()


def raise_fd_limit() -> None:
    """Lift the soft open-files limit to the hard one: each stream is a descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Server(uvicorn.Server):
    """uvicorn's server, saying where it serves once it listens (never before)."""

    def __init__(self, config: uvicorn.Config, settings: Settings) -> None:
        super().__init__(config)
        self.settings = settings

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and sockets:
            host, port = sockets[0].getsockname()[:2]
            where = f"http://{f'[{host}]' if ':' in host else host}:{port}/"
            log.info("[api] inbox page and API on %s (access %s)", where, self.settings.api_access)
            listening.ready(f"inbox page and API on {where}")


def listen_socket(host: str, port: int) -> socket.socket:
    """API_BIND:API_PORT bound (uvicorn listens on it once the app has started)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


async def prepare_database(settings: Settings, url: str, setting: str) -> replica.Routes:
    """Prove the URL works, find out whether it is a standby (replica.py),
    and make sure the primary's schema is current (installing it if allowed)."""
    pooled = settings.database_pooled
    conn = await db_connect.connect(url, setting, db_connect.looks_pooled(url, pooled))
    try:
        routes = replica.routes(settings, url, setting, await replica.in_recovery(conn))
        if routes.fallback:
            await conn.close()
            conn = await db_connect.connect(
                routes.primary,
                routes.primary_setting,
                db_connect.looks_pooled(routes.primary, pooled),
            )
            setting = routes.primary_setting
        await queries.install(conn)
    except asyncpg.InsufficientPrivilegeError:
        raise db_connect.Unusable(
            f"{setting}: the schema is older than this release and its role may not change "
            "it: run `tempmail init-db` with DATABASE_URL (the tables' owner) first"
        ) from None
    finally:
        await conn.close()
    return routes


def serve(settings: Settings) -> int:
    import uvloop

    raise_fd_limit()
    try:
        sock = listen_socket(settings.api_bind, settings.api_port)
    except OSError as error:
        problem = listening.problem("API_PORT", settings.api_bind, settings.api_port, error)
        log.error("[api] %s", problem)
        return 1
    setting = "API_DATABASE_URL" if settings.api_database_url else "DATABASE_URL"
    url = settings.api_database_url or embedded.database_url(settings, announce=True)
    try:
        routes = asyncio.run(prepare_database(settings, url, setting))
    except db_connect.Unusable as error:
        log.error("[api] %s", error)
        sock.close()
        return 1
    debug = settings.log_level == "DEBUG"
    proxies = [str(network) for network in settings.api_trusted_proxies]
    config = uvicorn.Config(
        build(settings, routes),
        http="httptools",
        loop="none",
        lifespan="on",
        # X-Forwarded-For/-Proto only from API_TRUSTED_PROXIES: uvicorn's own
        # default (FORWARDED_ALLOW_IPS, else 127.0.0.1) let any local client
        # name itself another client, past the rate limit.
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies,
        access_log=False,
        server_header=False,
        log_config=None,  # our logging, as every process of ours
        log_level=logging.DEBUG if debug else logging.WARNING,  # its start-up lines say nothing
        timeout_graceful_shutdown=UVICORN_GRACE,
    )
    server = Server(config, settings)
    uvloop.run(server.serve(sockets=[sock]))
    return 0 if server.started else 1
