"""Live push: PostgreSQL LISTEN -> in-memory fan-out -> server-sent event streams.

The writer announces each committed `emails` row with NOTIFY (payload
"<id> <mailbox_owner>", delivered at COMMIT only, so an event never names a
row we cannot read). One connection LISTENs; notifications for addresses
nobody watches cost a dict lookup. For watched ones the rows of one commit
are fetched together (by primary key) and handed to every stream of that
address, which formats them as Mercure does: one unnamed event per
resource, a JSON object per `data:` field.

The same connection LISTENs for account changes (queries_accounts.ACCOUNTS_CHANNEL:
every write to `accounts`, by any API process or the command line,
announces its address), and the private_email refresh reports addresses
that joined or left the list: the streams of such an address are told
their access may have changed (`Signal.RECHECK`), and whoever consumes
them decides again (mercure.py). Changes announced while the connection
is down are not heard: the consumer's own bound (a decision is trusted
for RECHECK_SECONDS) covers them, rather than every stream asking the
database at once when it comes back.

A lost LISTEN connection (server restart, pg_terminate_backend, network)
is noticed through asyncpg's termination callback and a periodic ping, and
re-established with backoff; then every watched address is read for rows
written since shortly before the connection was last known to be alive,
and rows already sent are skipped (a bounded memory of recent ids), so
nothing committed in the gap is lost and nothing is sent twice.

The catch-up goes by when rows were written (`emails.created_at`, the
writing statement's start), never by when mail arrived (`received_at`):
a message may arrive long before it commits (it waited behind a lock,
or in the spool through an outage). Times are the database's own clock
(each ping reads it), so the API host's clock does not matter. A row
committed after the last ping was written by a statement that began at
most the writer's statement timeout before (db.create_pool: 60 s);
CATCH_UP_MARGIN is twice that.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime
import enum
import logging
import uuid
from collections.abc import Iterable
from typing import Any

import asyncpg

from .. import db
from . import queries, queries_accounts, queries_mail

log = logging.getLogger("app.api.events")

APPLICATION_NAME = "tempmail-api-listen"
CATCH_UP_MARGIN = datetime.timedelta(seconds=120)
PING_INTERVAL = 5.0
PING_TIMEOUT = 5.0
BACKOFF_MAX = 5.0
QUEUE_SIZE = 1000  # events waiting for one slow stream before it is closed
RECENT_IDS = 50_000
FLUSH_RETRY = 0.5  # seconds before reading new rows again after a failure


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One committed row for a stream: the list row and the mailbox's bytes used."""

    row: Any
    used: int
    # Formatted events by (base URL, account id): streams of one address share them.
    formatted: dict[tuple[str, str | None], list[Any]] = dataclasses.field(
        default_factory=dict, compare=False
    )


class Signal(enum.Enum):
    """What a stream's queue may hold besides deliveries."""

    END = "end"  # the stream fell QUEUE_SIZE events behind: close it
    RECHECK = "recheck"  # who may read its addresses may have changed: decide again now


class Stream:
    """One open event stream: its addresses, and a queue of deliveries
    (at most QUEUE_SIZE waiting; then it ends).

    `generation` counts the times its access may have changed; a consumer
    compares it with the one its last decision saw."""

    def __init__(self, addresses: tuple[str, ...]) -> None:
        self.addresses = addresses
        self.queue: asyncio.Queue[Delivery | Signal] = asyncio.Queue()
        self.closed = False
        self.generation = 0
        self._recheck_queued = False

    def offer(self, delivery: Delivery) -> None:
        if self.closed:
            return
        if self.queue.qsize() >= QUEUE_SIZE:
            self.closed = True
            self.queue.put_nowait(Signal.END)
            log.warning("[events] closed a stream that fell %d events behind", QUEUE_SIZE)
            return
        self.queue.put_nowait(delivery)

    def access_changed(self) -> None:
        """Make the consumer decide again, even if nothing is delivered meanwhile."""
        self.generation += 1
        if not self.closed and not self._recheck_queued:
            self._recheck_queued = True
            self.queue.put_nowait(Signal.RECHECK)

    async def next(self) -> Delivery | Signal:
        item = await self.queue.get()
        if item is Signal.RECHECK:
            self._recheck_queued = False
        return item


class Hub:
    """The LISTEN connection and the streams, by address."""

    def __init__(self, url: str, pool: asyncpg.Pool) -> None:
        self.url = url
        self.pool = pool
        self.streams: dict[str, set[Stream]] = collections.defaultdict(set)
        self._pending: list[uuid.UUID] = []
        self._flushing: asyncio.Task[None] | None = None
        self._recent: collections.OrderedDict[uuid.UUID, None] = collections.OrderedDict()
        self._lost = asyncio.Event()
        self._alive_at: datetime.datetime | None = None  # database time of the last ping
        self.connected = asyncio.Event()
        self.reconnects = 0

    # Streams ----------------------------------------------------------------------

    def subscribe(self, addresses: tuple[str, ...]) -> Stream:
        """A new stream of `addresses`, receiving from now on."""
        stream = Stream(addresses)
        for address in addresses:
            self.streams[address].add(stream)
        return stream

    def unsubscribe(self, stream: Stream) -> None:
        for address in stream.addresses:
            streams = self.streams.get(address)
            if streams is not None:
                streams.discard(stream)
                if not streams:
                    del self.streams[address]

    def access_changed(self, addresses: Iterable[str]) -> None:
        """Tell the streams of `addresses` that who may read them may have changed."""
        for address in addresses:
            for stream in list(self.streams.get(address, ())):
                stream.access_changed()

    def _account_changed(self, _conn: object, _pid: int, _channel: str, address: str) -> None:
        self.access_changed([address])

    @property
    def stream_count(self) -> int:
        return len({id(s) for streams in self.streams.values() for s in streams})

    # The LISTEN connection -----------------------------------------------------------

    async def run(self) -> None:
        """Keep one LISTEN connection up for ever (cancel to stop)."""
        backoff = 0.1
        # Database time when the connection was last known to hear every
        # commit, while a catch-up from it is owed (None: nothing is owed).
        heard_until: datetime.datetime | None = None
        while True:
            try:
                conn = await asyncpg.connect(
                    self.url, timeout=5, server_settings={"application_name": APPLICATION_NAME}
                )
            except queries.DATABASE_ERRORS as error:
                log.warning("[events] cannot LISTEN yet: %r; retrying", error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            backoff = 0.1
            try:
                self._lost.clear()
                conn.add_termination_listener(lambda _conn: self._lost.set())
                await conn.add_listener(db.NEW_MAIL_CHANNEL, self._notified)
                await conn.add_listener(queries_accounts.ACCOUNTS_CHANNEL, self._account_changed)
                self._alive_at = await queries.database_time(conn)
                self.connected.set()
                if heard_until is not None:
                    self.reconnects += 1
                    caught = await self.catch_up(heard_until - CATCH_UP_MARGIN)
                    heard_until = None  # only once caught up: a failed catch-up is retried
                    log.warning("[events] LISTEN re-established; caught up %d message(s)", caught)
                else:
                    log.info("[events] listening on %s", db.NEW_MAIL_CHANNEL)
                await self._watch(conn)
            except queries.DATABASE_ERRORS as error:
                log.warning("[events] LISTEN connection failed: %r", error)
            finally:
                self.connected.clear()
                if heard_until is None:  # the first loss not yet caught up
                    heard_until = self._alive_at
                conn.terminate()
            log.warning("[events] LISTEN connection lost; reconnecting")

    async def _watch(self, conn: asyncpg.Connection) -> None:
        """Return when the connection is gone (termination callback or failed ping)."""
        while not self._lost.is_set():
            try:
                await asyncio.wait_for(self._lost.wait(), PING_INTERVAL)
                return
            except TimeoutError:
                pass
            self._alive_at = await asyncio.wait_for(queries.database_time(conn), PING_TIMEOUT)

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        # "<uuid> <address>": the address may itself contain spaces (quoted local part).
        ident, _, address = payload.partition(" ")
        if address not in self.streams:
            return
        try:
            self._pending.append(uuid.UUID(ident))
        except ValueError:
            return
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        while self._pending:
            ids, self._pending = self._pending, []
            try:
                rows = await queries_mail.messages_by_ids(self.pool, ids)
            except queries.DATABASE_ERRORS as error:
                # The rows are committed: try again shortly (if the database is
                # gone, LISTEN goes too and the catch-up finds them anyway).
                log.warning("[events] could not read %d new message(s): %r", len(ids), error)
                self._pending = ids + self._pending
                await asyncio.sleep(FLUSH_RETRY)
                continue
            rows.sort(key=lambda r: (r["received_at"] is None, r["received_at"]))
            await self.deliver(rows)

    async def deliver(self, rows: Iterable[Any]) -> int:
        """Hand each row not sent before to the streams of its address; how many."""
        sent = 0
        used: dict[str, int] = {}
        for row in rows:
            if row["id"] in self._recent:
                continue
            self._remember(row["id"])
            address = row["mailbox_owner"]
            streams = self.streams.get(address)
            if not streams:
                continue
            if address not in used:
                used[address] = await queries_mail.used_bytes(self.pool, address)
            delivery = Delivery(row, used[address])
            for stream in list(streams):
                stream.offer(delivery)
            sent += 1
        return sent

    def _remember(self, ident: uuid.UUID) -> None:
        self._recent[ident] = None
        if len(self._recent) > RECENT_IDS:
            self._recent.popitem(last=False)

    async def catch_up(self, since: datetime.datetime) -> int:
        """Deliver the rows of watched addresses written after `since` (database time)."""
        addresses = list(self.streams)
        if not addresses:
            return 0
        rows = await queries_mail.written_since(self.pool, addresses, since)
        return await self.deliver(rows)
