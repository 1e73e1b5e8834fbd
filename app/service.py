"""Composition root: builds the stages, runs them, and owns the shutdown order.

`Service.serve()` runs in named phases, as uvicorn's server does:
  build  check the spool is writable (else refuse to start, one line), find
         the database (embedded PostgreSQL if DATABASE_URL is unset) and
         connect once (a URL that cannot work: one line, exit), make the
         pool, the prepare stage, the writer, the lists, the handler;
  start  start the writer; install the schema and load the lists, waiting
         up to LISTS_WAIT so the first messages after a (re)start are not
         refused; then listen, and start the side tasks (list refresh and
         LISTEN, spool replay, retention, heartbeat, certificates, metrics,
         the webhook sender once the schema is in);
         tell whoever started us that we listen (listening.ready);
  run    until SIGTERM/SIGINT; SIGHUP reloads (lists now, the certificate);
  drain  bounded by DRAIN_TIMEOUT: close the listener, say 421 to idle
         sessions, let sessions inside a transaction finish (half the time),
         write the queue, spool what is left (durable sessions still
         waiting then get their 250: the spool keeps the promise), close
         the remaining sessions;
  stop   cancel the side tasks, close the pool (deadline, then terminate).
A second SIGTERM/SIGINT ends the waiting at once: what is queued is spooled
and the process exits.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import ssl
from collections.abc import Awaitable, Callable

import httpx

from . import db, db_connect, db_dedup, db_schema, embedded, listening, metrics, retention
from .auth import Authenticator
from .config import Settings
from .connections import Connections
from .heartbeat import Heartbeat, check_health
from .prepare import Preparer
from .ratelimit import RateLimits
from .refresh import ListsKeeper
from .reputation import Reputation
from .resolver import Resolver
from .scanner import Scanner
from .screen import Screen
from .smtp import Handler, session_factory
from .sources import ListsState
from .spool import Spool
from .store import BatchWriter
from .tasks import retry_until_done, run_every
from .tls import CertificateHolder
from .webhooks_sender import Sender

log = logging.getLogger("app.service")

QUEUE_BYTES = 512 * 1024 * 1024
CERT_CHECK_INTERVAL = 60.0  # seconds between looks at the certificate files
LISTS_WAIT = 10.0  # seconds start-up waits for the lists before listening anyway
POOL_CLOSE_TIMEOUT = 5.0
REPLY_WAIT = 2.0  # seconds a drain waits for sessions to send the replies they owe
SPOOL_CHECK_INTERVAL = 2.0  # seconds between looks at the spool directories
DEDUP_PRUNE = 300.0  # seconds between prunes of resend keys past DEDUP_WINDOW


class StartupError(Exception):
    """Start-up cannot go on; str() is the one line to log."""


def raise_fd_limit() -> int:
    """Lift the soft open-files limit to the hard one: each connection is a descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _report_failure(task: asyncio.Task[object]) -> None:
    """A side task that ends with an error says so at once, not at shutdown."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("[service] %s stopped: %r", task.get_name(), error, exc_info=error)


def check_spool(spool: Spool) -> None:
    """Raise StartupError unless the spool can hold acknowledged mail."""
    directory = str(spool.directory)
    try:
        spool.check_writable()
    except OSError as error:
        raise StartupError(
            f"SPOOL_DIR={directory!r} is not writable ({error.strerror or error}): "
            "acknowledged mail could not be kept through an outage or a restart. "
            "Create it, writable by this user (the systemd unit uses /var/spool/tempmail-smtp)"
        ) from None


def make_scanner(settings: Settings) -> Scanner | None:
    if not settings.spam_scanner or settings.spam_checks == "off":
        return None
    return Scanner(
        settings.spam_scanner,
        settings.spam_timeout,
        settings.spam_junk_score,
        settings.spam_reject_score,
        settings.spam_checks,
    )


def make_reputation(settings: Settings) -> Reputation | None:
    zones = (*settings.dnsbl_zones, *settings.dnswl_zones)
    if settings.dnsbl_checks == "off" or not zones:
        return None
    resolver = Resolver(settings.dns_resolver, timeout=settings.dnsbl_timeout)
    return Reputation(resolver, zones, settings.dnsbl_timeout, settings.dnsbl_threshold)


class Service:
    def __init__(self, settings: Settings, worker: int | None = None) -> None:
        self.settings = settings
        self.worker = worker  # WORKERS>1: this worker's number, which names its spool
        self.spool = Spool.of_worker(settings.spool_dir, worker)
        self.stopping = asyncio.Event()
        self.forced = asyncio.Event()  # a second stop signal: no more waiting
        self.side_tasks: list[asyncio.Task[object]] = []
        self.pool: db.Pool | None = None
        self.server: asyncio.Server | None = None
        self.metrics_server: asyncio.Server | None = None
        self.certificates: CertificateHolder | None = None

    async def serve(self) -> int:
        """Run until SIGTERM/SIGINT; return the process exit code."""
        self.install_signal_handlers()  # first: a signal during start-up is a clean stop
        try:
            await self.build()
            await self.start()
        except StartupError as error:
            log.error("[service] %s", error)
            await self.stop()
            return 1
        await self.run()
        spooled = await self.drain()
        await self.stop()
        log.info(
            "[service] stopped: %d rows written, %d spooled, %d dead letters",
            self.writer.stats.rows_written,
            spooled,
            self.writer.stats.dead_letters,
        )
        return 0

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.handle_stop, signum)
        loop.add_signal_handler(signal.SIGHUP, self.handle_reload)

    def handle_stop(self, signum: int) -> None:
        if self.stopping.is_set():
            name = signal.Signals(signum).name
            log.warning("[service] second %s: spooling what is queued and exiting", name)
            self.forced.set()
        self.stopping.set()

    def handle_reload(self) -> None:
        if not hasattr(self, "keeper"):
            log.warning("[service] SIGHUP during start-up: nothing to reload yet")
            return
        log.warning("[service] SIGHUP: reloading the lists and, if configured, the certificate")
        self.keeper.reload()
        if self.certificates is not None:
            self.certificates.reload()

    # Phases -------------------------------------------------------------------

    async def build(self) -> None:
        settings = self.settings
        check_spool(self.spool)
        raise_fd_limit()
        self.url = url = await asyncio.to_thread(embedded.database_url, settings, True)
        # A URL that cannot work is one line now, not retries for ever. Not in
        # a worker: its supervisor proved the URL, and a worker restarted during
        # an outage must come up to replay its spool once the database is back.
        self.route = where = db_connect.route(settings, url)
        if self.worker is None:
            try:
                await db_connect.reach_route(where)
            except db_connect.Unusable as error:
                raise StartupError(f"[db] {error}") from None
        self.pool = await db.create_pool(url, pooled=where.pooled, name=where.name)
        # Its own connections: a delivery holds one for up to WEBHOOK_TIMEOUT.
        self.webhook_pool = await db.create_pool(
            url, settings.webhook_concurrency + 1, pooled=where.pooled, name=where.name
        )
        authenticate = None
        if settings.auth_checks != "off":
            authenticator = Authenticator(
                Resolver(settings.dns_resolver, timeout=settings.auth_timeout),
                settings.smtp_hostname,
                settings.auth_timeout,
            )
            authenticate = authenticator.check
        self.lists = ListsState(settings)
        self.scanner = make_scanner(settings)
        screen = Screen(
            self.lists.get, settings.rules_checks, settings.content_checks, self.scanner
        )
        self.preparer = Preparer(authenticate, settings.parse_timeout, screen)
        self.writer = BatchWriter(
            self.pool,
            self.spool,
            batch_max=settings.batch_max,
            batch_delay=settings.batch_delay_ms / 1000,
            queue_size=settings.queue_size,
            queue_bytes=QUEUE_BYTES,
            dedup_window=settings.dedup_window,
        )
        self.schema_ready = asyncio.Event()
        self.keeper = ListsKeeper(self.lists, settings, self.pool, where, self.schema_ready)
        self.connections = Connections(
            settings.max_connections,
            settings.max_connections_per_ip,
            settings.max_receiving_bytes,
            settings.max_message_size,
        )
        self.handler = Handler(
            settings,
            self.lists.get,
            self.preparer,
            self.writer,
            make_reputation(settings),
            RateLimits(settings) if settings.rate_limits != "off" else None,
        )
        if settings.tls_cert and settings.tls_key:
            self.certificates = CertificateHolder(settings.tls_cert, settings.tls_key)

    async def start(self) -> None:
        settings = self.settings
        self.writer_task = asyncio.ensure_future(self.writer.run())
        self.spawn("prepare-db", self.prepare_database())
        self.spawn("lists", self.keeper.run())
        if settings.metrics_port:  # first: /readyz tells why start-up is waiting
            try:
                self.metrics_server = await metrics.start_http(
                    settings.metrics_bind, settings.metrics_port, self.health, settings.workers > 1
                )
            except OSError as error:
                where = f"{settings.metrics_bind}:{settings.metrics_port}"
                raise StartupError(f"[metrics] cannot listen on {where}: {error}") from None
        try:
            await asyncio.wait_for(self.lists.ready.wait(), LISTS_WAIT)
        except TimeoutError:
            log.warning(
                "[lists] not loaded after %.0fs: listening anyway; recipients get 451 "
                "until they load",
                LISTS_WAIT,
            )
        loop = asyncio.get_running_loop()
        try:
            self.server = await loop.create_server(
                session_factory(settings, self.handler, self.connections, self.tls_context),
                settings.smtp_bind,
                settings.smtp_receive_port,
                # Only shared on purpose: otherwise a stale instance would silently split the port.
                reuse_port=settings.workers > 1,
                backlog=1024,
            )
        except OSError as error:
            problem = listening.problem(
                "SMTP_RECEIVE_PORT", settings.smtp_bind, settings.smtp_receive_port, error
            )
            raise StartupError(f"[smtp] {problem}") from None
        port = self.server.sockets[0].getsockname()[1]
        log.info(
            "[smtp] listening on %s:%d as %s, ACK_MODE=%s (host %s)",
            settings.smtp_bind,
            port,
            settings.smtp_hostname,
            settings.ack_mode,
            settings.host_name,
        )
        metrics.HOST.labels(settings.host_name).set(1)
        listening.ready(f"SMTP on {settings.smtp_bind}:{port}")
        self.start_side_tasks()

    def start_side_tasks(self) -> None:
        settings, pool = self.settings, self.pool
        assert pool is not None
        if self.certificates is not None:
            self.spawn(
                "tls", run_every("tls", CERT_CHECK_INTERVAL, self.certificates.reload_if_changed)
            )
        self.spawn("spool", run_every("spool", SPOOL_CHECK_INTERVAL, self.watch_spool))
        # Also when mail is kept forever: it makes the partitions ahead.
        self.spawn(
            "retention",
            run_every(
                "retention",
                settings.retention_interval,
                lambda: retention.maintain(
                    pool, settings.retention_hours, self.lists.current.private
                ),
            ),
        )
        if settings.dedup_window > 0:  # resend keys past the window go (any host may)
            window = settings.dedup_window
            self.spawn(
                "dedup",
                run_every("dedup", min(window, DEDUP_PRUNE), lambda: db_dedup.prune(pool, window)),
            )
        sender = Sender(self.webhook_pool, settings, self.writer.outbox)
        self.spawn("webhooks", self.after_schema(sender.run))
        self.http = httpx.AsyncClient(timeout=5)
        if settings.heartbeat_url:
            heartbeat = Heartbeat(settings.heartbeat_url, self.http, self.health)
            self.spawn(
                "heartbeat", run_every("heartbeat", settings.heartbeat_interval, heartbeat.once)
            )

    async def run(self) -> None:
        await self.stopping.wait()

    async def drain(self) -> int:
        """Stop taking mail, finish or spool what was accepted; return how many were spooled."""
        settings = self.settings
        log.info(
            "[service] stopping: draining sessions and queue (up to %.0fs)", settings.drain_timeout
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.drain_timeout
        if self.server is not None:
            self.server.close()
        if self.metrics_server is not None:
            self.metrics_server.close()
        self.connections.close_idle()
        if not await self.until(self.connections.all_closed.wait(), settings.drain_timeout / 2):
            log.warning(
                "[service] %d sessions still open: writing the queue, then closing them",
                len(self.connections.sessions),
            )
        left = 0.0 if self.forced.is_set() else max(0.0, deadline - loop.time())
        spooled = await self.writer.drain(self.writer_task, self.until, left)
        # Durable sessions whose messages were just written or spooled owe a 250.
        await self.until(self.connections.transactions_ended(), REPLY_WAIT)
        for session in list(self.connections.sessions):
            session.say_goodbye()
        return spooled

    async def stop(self) -> None:
        for task in self.side_tasks:
            task.cancel()
        await asyncio.gather(*self.side_tasks, return_exceptions=True)
        if hasattr(self, "preparer"):
            self.preparer.close()
        if hasattr(self, "http"):
            await self.http.aclose()
        scanner = getattr(self, "scanner", None)
        if scanner is not None:
            await scanner.close()
        for pool in (getattr(self, "webhook_pool", None), self.pool):
            if pool is not None:
                try:
                    await asyncio.wait_for(pool.close(), POOL_CLOSE_TIMEOUT)
                except TimeoutError:
                    pool.terminate()

    # Helpers ------------------------------------------------------------------

    def spawn(self, name: str, work: Awaitable[object]) -> None:
        task: asyncio.Task[object] = asyncio.ensure_future(work)
        task.set_name(name)
        task.add_done_callback(_report_failure)
        self.side_tasks.append(task)

    async def until(self, work: Awaitable[object], timeout: float) -> bool:
        """Await `work` for up to `timeout`, or until a forced stop; True if it finished."""
        waiting = asyncio.ensure_future(work)
        forced = asyncio.ensure_future(self.forced.wait())
        await asyncio.wait([waiting, forced], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finished = waiting.done()
        waiting.cancel()
        forced.cancel()
        return finished

    async def after_schema(self, work: Callable[[], Awaitable[object]]) -> None:
        """Run `work` once the schema is installed (its tables exist)."""
        await self.schema_ready.wait()
        await work()

    async def watch_spool(self) -> None:
        self.writer.watch_spool()

    def tls_context(self) -> ssl.SSLContext | None:
        return self.certificates.context if self.certificates else None

    async def prepare_database(self) -> None:
        """Install the schema (retrying while the database is down), make the
        partitions ahead, replay the spool, then build missing indexes."""
        pool = self.pool
        assert pool is not None

        where = self.route

        async def install(indexes: bool) -> None:
            # Over a session: the index builds take a session advisory lock.
            conn = await db_connect.connect_session(where)
            try:
                await db_schema.install_schema(conn, indexes=indexes)
            finally:
                await conn.close()

        await retry_until_done("db", lambda: install(False))
        try:
            # Partitions for the coming hours, before the first write. Not fatal:
            # without them rows go to the DEFAULT partition, and the task retries.
            await retention.maintain(pool, self.settings.retention_hours, None, expire_mail=False)
        except Exception as error:
            log.warning("[retention] could not create partitions yet: %r", error)
        self.schema_ready.set()
        for orphan in Spool.orphans(self.settings.spool_dir, self.worker, self.settings.workers):
            try:
                moved = self.spool.adopt(orphan)
            except OSError as error:  # what moved is replayed; the rest waits, said loudly
                log.error(
                    "[store] cannot take over the spool files in %s (%s): they wait there "
                    "until it is fixed and the service restarted",
                    orphan.directory,
                    error.strerror or error,
                )
                continue
            if moved:
                log.warning("[store] took over %d spool files from %s", moved, orphan.directory)
        self.writer.replay(self.preparer.start)
        # Last: on a big existing table an index build takes a while (it blocks nobody).
        await retry_until_done("db", lambda: install(True))

    async def health(self) -> tuple[bool, list[str]]:
        assert self.pool is not None
        found = await check_health(self.pool, self.writer, self.lists)
        return found.ok, list(found.problems)
