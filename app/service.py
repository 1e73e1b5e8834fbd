"""Composition root: builds the stages, runs them, and owns the shutdown order.

Start: database URL (embedded PostgreSQL if unset), pool, writer, lists,
SMTP listener; the schema install, spool replay and list loads run in the
background with retries, so a database that is down at start gives 451s
(lists not loaded) rather than a crash loop.

Stop (SIGTERM/SIGINT), bounded by DRAIN_TIMEOUT in total:
  1. close the listener; 421 to idle sessions, sessions inside a transaction
     finish it (up to half the drain time), then the rest are cut;
  2. the writer writes what is queued; what it cannot write in the time left
     is spooled to disk (fsynced) for the next start;
  3. periodic tasks (lists, heartbeat, retention, certificates) are
     cancelled and the pool closed.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import signal
import ssl
from collections.abc import Awaitable, Callable

import httpx

from . import db, db_schema, embedded, metrics, retention
from .auth import Authenticator
from .config import Settings
from .heartbeat import Heartbeat, check_health
from .resolver import Resolver
from .smtp import Connections, Handler, session_factory
from .sources import ListsState, make_source, refresh_once
from .spool import Spool
from .store import BatchWriter
from .tasks import run_every
from .tls import CertificateHolder

log = logging.getLogger("app.service")

QUEUE_BYTES = 512 * 1024 * 1024
CERT_CHECK_INTERVAL = 60.0  # seconds between looks at the certificate files
STARTUP_BACKOFF_MAX = 10.0


def raise_fd_limit() -> int:
    """Lift the soft open-files limit to the hard one: each connection is a descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


async def retry_until_done(name: str, step: Callable[[], Awaitable[object]]) -> None:
    """Run `step` until it succeeds, backing off; log the first failure and each recovery."""
    backoff = 0.2
    failed = False
    while True:
        try:
            await step()
        except Exception as error:
            if not failed:
                log.warning("[%s] not ready, retrying: %r", name, error)
            failed = True
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, STARTUP_BACKOFF_MAX)
            continue
        if failed:
            log.warning("[%s] ready", name)
        return


async def keep_lists_fresh(
    state: ListsState, settings: Settings, pool: db.Pool, schema_ready: asyncio.Event
) -> None:
    source = make_source(settings, pool)
    if source.name == "postgres":
        await schema_ready.wait()  # the tables exist only once the schema is installed
    tables = [("private_email", settings.private_refresh)]
    if settings.use_domain_whitelist:
        tables.append(("domains", settings.domains_refresh))
    if settings.use_bans:
        tables.append(("bans", settings.bans_refresh))

    async def keep(table: str, interval: float) -> None:
        async def once() -> None:
            await refresh_once(state, source, table)

        await retry_until_done(f"lists:{table}", once)
        await run_every(f"lists:{table}", interval, once)

    await asyncio.gather(*(keep(table, interval) for table, interval in tables))


async def prepare_database(
    pool: db.Pool,
    writer: BatchWriter,
    replay_spool: bool,
    schema_ready: asyncio.Event,
    retention_hours: float,
) -> None:
    async def install(indexes: bool) -> None:
        async with pool.acquire() as conn:
            await db_schema.install_schema(conn, indexes=indexes)

    await retry_until_done("db", lambda: install(False))
    try:
        # Partitions for the coming hours, before the first write. Not fatal:
        # without them rows go to the DEFAULT partition, and the task retries.
        await retention.maintain(pool, retention_hours, None, expire_mail=False)
    except Exception as error:
        log.warning("[retention] could not create partitions yet: %r", error)
    schema_ready.set()
    if replay_spool:  # one worker replays; the others would only repeat it
        await writer.replay()
    # Last: on a big existing table an index build takes a while (it blocks nobody).
    await retry_until_done("db", lambda: install(True))


async def serve(settings: Settings, replay_spool: bool = True) -> int:
    """Run until SIGTERM/SIGINT; return the process exit code."""
    loop = asyncio.get_running_loop()
    # Handlers first: a SIGTERM during start-up still means a clean stop.
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    raise_fd_limit()
    url = settings.database_url
    if url is None:
        url = await asyncio.to_thread(embedded.start, settings.data_dir)
    pool = await db.create_pool(url)
    authenticate = None
    if settings.auth_checks != "off":
        authenticator = Authenticator(
            Resolver(settings.dns_resolver, timeout=settings.auth_timeout),
            settings.smtp_hostname,
            settings.auth_timeout,
        )
        authenticate = authenticator.check
    writer = BatchWriter(
        pool,
        Spool(settings.spool_dir),
        batch_max=settings.batch_max,
        batch_delay=settings.batch_delay_ms / 1000,
        queue_size=settings.queue_size,
        queue_bytes=QUEUE_BYTES,
        authenticate=authenticate,
    )
    lists = ListsState(settings)
    connections = Connections(settings.max_connections, settings.max_connections_per_ip)
    handler = Handler(settings, lists.get, writer, authenticate)
    certificates = None
    if settings.tls_cert and settings.tls_key:
        certificates = CertificateHolder(settings.tls_cert, settings.tls_key)
        loop.add_signal_handler(signal.SIGHUP, certificates.reload)

    def tls_context() -> ssl.SSLContext | None:
        return certificates.context if certificates else None

    try:
        server = await loop.create_server(
            session_factory(settings, handler, connections, tls_context),
            settings.smtp_bind,
            settings.smtp_receive_port,
            # Only shared on purpose: otherwise a stale instance would silently split the port.
            reuse_port=settings.workers > 1,
            backlog=1024,
        )
    except OSError as error:
        await pool.close()
        log.error("[smtp] %s", bind_failure(settings, error))
        return 1
    port = server.sockets[0].getsockname()[1]
    log.info(
        "[smtp] listening on %s:%d as %s, ACK_MODE=%s",
        settings.smtp_bind,
        port,
        settings.smtp_hostname,
        settings.ack_mode,
    )

    writer_task = asyncio.create_task(writer.run(), name="writer")
    schema_ready = asyncio.Event()
    side_tasks = [
        asyncio.create_task(
            prepare_database(pool, writer, replay_spool, schema_ready, settings.retention_hours),
            name="prepare-db",
        ),
        asyncio.create_task(keep_lists_fresh(lists, settings, pool, schema_ready), name="lists"),
    ]
    if certificates is not None:
        side_tasks.append(
            asyncio.create_task(
                run_every("tls", CERT_CHECK_INTERVAL, certificates.reload_if_changed), name="tls"
            )
        )
    http = httpx.AsyncClient(timeout=5)
    # Also when mail is kept forever: it makes the partitions ahead.
    side_tasks.append(
        asyncio.create_task(
            run_every(
                "retention",
                settings.retention_interval,
                lambda: retention.maintain(pool, settings.retention_hours, lists.current.private),
            ),
            name="retention",
        )
    )
    if settings.heartbeat_url:
        heartbeat = Heartbeat(settings.heartbeat_url, http, pool, writer, lists)
        side_tasks.append(
            asyncio.create_task(
                run_every("heartbeat", settings.heartbeat_interval, heartbeat.once),
                name="heartbeat",
            )
        )
    metrics_server = None
    if settings.metrics_port:

        async def ready() -> tuple[bool, list[str]]:
            health = await check_health(pool, writer, lists)
            return health.ok, list(health.problems)

        metrics_server = await metrics.start_http(
            settings.metrics_bind, settings.metrics_port, ready, shared=settings.workers > 1
        )
    await stop.wait()

    log.info(
        "[service] stopping: draining sessions and queue (up to %.0fs)", settings.drain_timeout
    )
    deadline = loop.time() + settings.drain_timeout
    server.close()
    if metrics_server is not None:
        metrics_server.close()
    connections.close_idle()
    try:
        await asyncio.wait_for(connections.all_closed.wait(), settings.drain_timeout / 2)
    except TimeoutError:
        log.warning("[service] %d sessions still open: closing them", len(connections.sessions))
    for session in list(connections.sessions):
        session.say_goodbye()
    spooled = await writer.drain(writer_task, max(0.0, deadline - loop.time()))
    writer.close()
    for task in side_tasks:
        task.cancel()
    await asyncio.gather(*side_tasks, return_exceptions=True)
    await http.aclose()
    try:
        await asyncio.wait_for(pool.close(), 5)
    except TimeoutError:
        pool.terminate()
    log.info(
        "[service] stopped: %d rows written, %d spooled, %d dead letters",
        writer.stats.rows_written,
        spooled,
        writer.stats.dead_letters,
    )
    return 0


def bind_failure(settings: Settings, error: OSError) -> str:
    where = f"{settings.smtp_bind}:{settings.smtp_receive_port}"
    if error.errno == errno.EACCES:
        return (
            f"cannot listen on {where}: permission denied. Ports below 1024 need root or "
            "CAP_NET_BIND_SERVICE (the unit in deploy/systemd grants it), "
            "or set SMTP_RECEIVE_PORT to a port above 1023"
        )
    if error.errno == errno.EADDRINUSE:
        return f"cannot listen on {where}: the address is already in use"
    return f"cannot listen on {where}: {error.strerror or error}"
