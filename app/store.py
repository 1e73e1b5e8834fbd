"""Store stage: the batch writer between the prepare stage and PostgreSQL.

The promise behind a 250: a message handed to `submit()` ends in exactly one
of three places: committed to the database (once; writes are idempotent by
pre-made ids), spooled to local disk with fsync (shutdown with the database
down; replayed at the next start), or set aside on disk as a dead letter (a
message PostgreSQL refuses while it takes other mail: app/refusals.py).
Until then it stays in this writer's memory, and the writer never gives it
up: a database outage or a full database disk is retried, a database that
refuses every row is retried, an unexpected error puts the batch back at the
front of the line, and a spool that cannot be written keeps the message here
while new mail is refused (451; 452 while the database disk is full).

In durable mode `submit()` returns a future that is resolved only after that
COMMIT or fsync, so one commit releases every session whose message was in
the batch (group commit). A waiter that gives up (451) cancels its future:
a message not yet written is then dropped, and one whose write may have
committed is revoked (deleted by id in the next write; the id is kept in
the spool until then, so a restart does not forget it).

Batching (app/batching.py): the writer takes what is waiting, up to
BATCH_MAX messages or BATCH_BYTES; under light load it writes at once, under
load it lingers up to BATCH_DELAY_MS (scaled by how full the last batch was)
to fill the next.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from . import batching, db, db_batch, db_dedup, db_errors, metrics
from .model import Envelope, Prepared
from .queued import Item, WriterStats, prepared_of
from .refusals import Refusals
from .safekeeping import Safekeeping
from .spool import Spool
from .webhooks_outbox import Outbox

log = logging.getLogger("app.store")

BACKOFF_FIRST, BACKOFF_MAX = 0.05, 2.0
STALLED_AFTER = 1.0  # seconds without a commit before backpressure gives up waiting
IDLE_PROBE = 0.5  # seconds between database probes while idle with work owed


class QueueFull(Exception):
    """The writer cannot take this message now; the sender should retry (451)."""


class StoreFull(QueueFull):
    """The database is out of disk space; the sender should retry (452)."""


class BatchWriter:
    def __init__(
        self,
        pool: db.Pool,
        spool: Spool,
        *,
        batch_max: int,
        batch_delay: float,
        queue_size: int,
        queue_bytes: int,
        dedup_window: float = 0,
    ) -> None:
        self._pool = pool
        self._spool = spool
        self._batch_max = batch_max
        self._batch_delay = batch_delay
        self._queue_size = queue_size
        self._queue_bytes_max = queue_bytes
        self._dedup_window = dedup_window  # resends found in the write (app/db_dedup.py)
        self.confirmations = db_dedup.Confirmations(dedup_window)  # 250s the clients saw
        self._waiting: collections.deque[Item] = collections.deque()
        self._arrived = asyncio.Event()
        self._in_flight: list[Item] = []  # taken from _waiting, not yet safe
        self._queued_bytes = 0
        # Past the high-water mark new messages wait for room (backpressure)
        # rather than being refused at once; the room event is set below it.
        self._high_water = max(1, queue_size * 8 // 10)
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()  # nothing waiting or in flight, no confirmation owed
        self._idle.set()
        self._last_commit = time.monotonic()
        self._last_batch_len = 1
        self.outage = False  # the last write attempt failed for a transient reason
        self.store_full: str | None = None  # the database is out of disk space: why
        self.running = False  # the writer loop is alive
        self.stats = WriterStats()
        self.outbox = Outbox()  # webhook events, written with their mail
        self._safe = Safekeeping(spool, self._release, self.stats)
        self._refusals = Refusals(pool, self._commit, self._safe.save_dead, self._without_abandoned)

    @property
    def spool_error(self) -> str | None:
        """Why the spool cannot be written, if so (new mail gets 451)."""
        return self._safe.error

    @property
    def refusing(self) -> str | None:
        """Why the database seems to refuse every message, if so."""
        return self._refusals.refusing

    # Producer side -----------------------------------------------------------

    def submit(
        self, envelope: Envelope, prepared: asyncio.Future[Prepared], wait: bool
    ) -> asyncio.Future[None] | None:
        """Queue a message; with `wait`, return a future resolved after its commit.

        Raises QueueFull (the sender gets 451) when memory is full, when the
        spool is broken, or in durable mode while the database is unreachable
        or refuses every message; StoreFull (452) while its disk is full.
        """
        size = len(envelope.raw)
        if len(self._waiting) + len(self._refusals.held) >= self._queue_size or (
            self._queued_bytes + size > self._queue_bytes_max
        ):
            raise QueueFull("queue full")
        if self.spool_error is not None:
            raise QueueFull("spool not writable")
        if not self.running:
            raise QueueFull("writer not running")
        if self.store_full is not None:
            raise StoreFull("mail store full")
        if wait and self.outage:
            raise QueueFull("database unreachable")
        if wait and self.refusing is not None:
            raise QueueFull("database refuses mail")
        committed = asyncio.get_running_loop().create_future() if wait else None
        self._enqueue(Item(envelope, prepared, committed))
        return committed

    def confirm(self, confirmation: db_dedup.Confirmation) -> None:
        """A client saw the 250 of a message: mark it in the next write."""
        self.confirmations.add(confirmation)
        self._arrived.set()  # an idle writer marks it within IDLE_PROBE
        if not self.outage:  # a drain writes it (lost in an outage: not waited for)
            self._idle.clear()

    def _enqueue(self, item: Item) -> None:
        self._waiting.append(item)
        self._queued_bytes += len(item.envelope.raw)
        self._arrived.set()
        # Ready now: wakes a writer whose batch is all still being prepared.
        item.prepared.add_done_callback(lambda _: self._arrived.set())
        self._idle.clear()
        metrics.QUEUE_DEPTH.set(len(self._waiting))
        if len(self._waiting) >= self._high_water:
            self._room.clear()

    async def wait_for_room(self, timeout: float) -> None:
        """Wait (up to `timeout`) while the queue is past its high-water mark.

        Slows senders to the rate the database takes, instead of 451s; during
        an outage, or while no batch commits, there is no point waiting.
        """
        stalled = time.monotonic() - self._last_commit > STALLED_AFTER
        if self._room.is_set() or self.outage or stalled:
            return
        try:
            await asyncio.wait_for(self._room.wait(), timeout)
        except TimeoutError:
            pass

    def replay(self, prepare: Callable[[Envelope], asyncio.Future[Prepared]]) -> int:
        """Queue the spooled messages and revokes of an earlier run.

        Spool files go only after their commit.
        """
        revokes = self._safe.owe_spooled_revokes()
        count = 0
        for path, envelope in self._spool.pending():
            self._safe.replaying(path)
            self._enqueue(Item(envelope, prepare(envelope), spool_path=path))
            count += 1
        if count or revokes:
            log.warning("[store] replaying %d spooled messages and %d revokes", count, revokes)
            self._arrived.set()
        return count

    def oldest_age(self) -> float:
        """Seconds the oldest unwritten message has waited (0 if none)."""
        oldest = self._in_flight[0] if self._in_flight else None
        if oldest is None and self._waiting:
            oldest = self._waiting[0]
        return time.monotonic() - oldest.enqueued if oldest else 0.0

    # Consumer side -----------------------------------------------------------

    async def run(self) -> None:
        """The writer loop, supervised: an unexpected error is logged and
        counted, its batch goes back to the front of the line, and the loop
        goes on after a pause. Only cancellation (shutdown) ends it."""
        self.running = True
        backoff = BACKOFF_FIRST
        try:
            while True:
                try:
                    await self._cycle()
                    backoff = BACKOFF_FIRST
                except Exception:
                    log.exception("[store] writer error; its batch will be written again")
                    metrics.WRITER_ERRORS.inc()
                    self._put_back(self._in_flight)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX)
        finally:
            self.running = False

    async def _cycle(self) -> None:
        self._safe.check(needed=self.outage)
        batch = await self._ready(await self._next_batch())
        for item in batch:
            if item.abandoned and not item.done and item.refused_at is None:
                self._forget(item)  # 451 given before any write: nothing is owed
        live = self._without_abandoned(batch)
        leftover = []
        if live or self._safe.revokes or self.outage or self.store_full or self.confirmations:
            leftover = await self._write(live)
        self._in_flight = leftover
        if not (leftover or self._waiting):
            self._refusals.nothing_to_test()
        if len(self._waiting) < self._high_water:
            self._room.set()
        if not (self._waiting or leftover or self.confirmations):
            self._idle.set()
        metrics.QUEUE_DEPTH.set(len(self._waiting))

    async def _next_batch(self) -> list[Item]:
        """Take the next batch; every item counts as in flight once taken.

        Held messages are tried again first once other mail has committed.
        While idle with work owed (revokes, a database outage or full disk, a
        spool to retry, a database refusing every row), return every
        IDLE_PROBE seconds an empty batch, or the held messages as a probe, so
        the owed work runs even when no mail arrives (new mail may get 451).
        """
        if self._in_flight:  # put back after an error, or left by a refusal: written first
            return list(self._in_flight)
        self._in_flight = self._refusals.take()
        if self._in_flight:
            return list(self._in_flight)
        while not self._waiting:
            self._arrived.clear()
            if self._owes_work():
                try:
                    await asyncio.wait_for(self._arrived.wait(), IDLE_PROBE)
                except TimeoutError:
                    self._in_flight = self._refusals.take(probe=self.refusing is not None)
                    return list(self._in_flight)
            else:
                await self._arrived.wait()
        batch = self._in_flight
        self._take(batch)
        last, delay = self._last_batch_len, self._batch_delay
        pause = batching.linger(delay, last, len(batch), self._batch_max)
        if pause:
            await asyncio.sleep(pause)
            self._take(batch)
        self._last_batch_len = len(batch)
        return list(batch)

    def _owes_work(self) -> bool:
        owed = (self.store_full, self.spool_error, self.refusing)
        owed_db = self.outage or bool(self._safe.revokes) or bool(self.confirmations)
        return owed_db or any(r is not None for r in owed)

    async def _ready(self, batch: list[Item]) -> list[Item]:
        """The items of `batch` whose preparation is done (up to batching.BATCH_BYTES),
        waiting for the first to finish (taking newly arrived mail meanwhile)
        if none is; the others go back to the front of the line, so one sender
        whose DNS does not answer (up to AUTH_TIMEOUT), or one message that
        parses slowly (up to PARSE_TIMEOUT), delays no one."""
        batch = await batching.wait_prepared(
            batch, self._waiting, self._in_flight, self._batch_max, self._arrived
        )
        ready, later = batching.split_ready(batch)
        if later:
            self._waiting.extendleft(reversed(later))
            self._in_flight = list(ready)
        return ready

    def _take(self, batch: list[Item]) -> None:
        batching.take(self._waiting, batch, self._batch_max)

    def _put_back(self, items: list[Item]) -> None:
        """After an unexpected error: items not yet safe stay in flight, written first."""
        self._in_flight = [
            item for item in items if not (item.done or item.held or self._safe.unsaved(item))
        ]

    def _forget(self, item: Item) -> None:
        """`item` leaves the writer: written, on disk, or dropped before any write."""
        item.done = True
        self._queued_bytes -= len(item.envelope.raw)

    async def _write(self, batch: list[Item]) -> list[Item]:
        """Commit `batch`; if the database refuses it, find the message it
        refuses (app/refusals.py). Returns what is left to write again (after
        a pause) while the database refuses every row.

        An empty batch still runs the pending revokes (and probes the database).
        """
        refusal = await self._commit(batch)
        if refusal is None:
            return []
        leftover = await self._refusals.isolate(batch, refusal)
        if leftover:
            await asyncio.sleep(self._refusals.pause())
        return leftover

    async def _commit(self, batch: list[Item]) -> BaseException | None:
        """Commit `batch` and the revokes owed, retrying while the database is
        unreachable or its disk full; None once committed, or the error with
        which it refused the batch."""
        backoff = BACKOFF_FIRST
        while True:
            started = time.perf_counter()
            try:
                revoked = await self._attempt(batch)
            except Exception as error:
                kind = db_errors.classify(error)
                if kind == db_errors.REFUSED:
                    return error
                if batch and db_errors.timed_out(error) and await db_batch.writes_now(self._pool):
                    # The database writes, not this batch in time: maybe one row's
                    # fault, so refused like any other (app/refusals.py finds it).
                    return error
                self._unavailable(error, kind)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                # The failed attempt may have committed: a message whose
                # sender gave up meanwhile is revoked, not retried.
                batch = self._without_abandoned(batch)
                continue
            self._available(bool(batch))
            self._safe.revoked(revoked)
            metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
            if batch:  # best effort, before the 250s
                owners = [owner for item in batch for owner in item.envelope.recipients]
                await db_batch.stamp_private(self._pool, owners)
            self._committed(batch)
            return None

    async def _attempt(self, batch: list[Item]) -> list[uuid.UUID]:
        """Write `batch` and the revokes owed; returns the revokes it ran."""
        if not batch and self.store_full is not None:
            await db_batch.probe_write(self._pool)  # only a real write tells if there is room
            return []
        revoke = list(self._safe.revokes)
        prepared = [prepared_of(item) for item in batch]
        # A confirmation is marked after its own message's claim is written.
        unwritten = [*self._waiting, *self._refusals.held, *batch] if self.confirmations else []
        marked, seen = self.confirmations.take({i.envelope.id for i in unwritten})
        await self.outbox.insert_batch(self._pool, prepared, revoke, self._dedup_window, seen)
        self.confirmations.marked(marked)
        return revoke

    def _unavailable(self, error: Exception, kind: str) -> None:
        """A write failed for a reason that is not the mail's: say so once."""
        if kind == db_errors.STORE_FULL:
            metrics.STORE_FULL.inc()
            if self.store_full is None:
                log.error(
                    "[store] the database is out of disk space (%s): new mail gets 452 until "
                    "it has room; what was accepted is kept and retried",
                    db_errors.describe(error),
                )
                self.store_full = db_errors.describe(error)
        elif not self.outage:
            log.warning("[store] database write failed, retrying: %r", error)
        if not self.outage:
            self.outage = True
            self._safe.check(needed=True)  # what is accepted meanwhile may have to go there

    def _available(self, wrote_mail: bool) -> None:
        """A write went through (with mail, or a probe)."""
        if self.outage:
            log.warning("[store] database writes recovered")
        self.outage = False
        if self.store_full is not None:
            log.warning("[store] the database has disk space again: accepting mail")
            self.store_full = None
        if wrote_mail:
            self._refusals.committed()

    def _without_abandoned(self, batch: list[Item]) -> list[Item]:
        """The items of `batch` still owed; those whose sender gave up (451)
        after a write that may have committed are revoked."""
        kept = []
        for item in batch:
            if item.done:
                continue
            if item.abandoned:
                self._safe.owe_revoke(item.envelope.id)
                self._forget(item)
            else:
                kept.append(item)
        return kept

    def watch_spool(self) -> None:
        """The periodic look at the spool (Safekeeping.watch)."""
        self._safe.watch()

    def _committed(self, batch: list[Item]) -> None:
        self._last_commit = time.monotonic()
        if batch:
            rows = sum(len(item.envelope.recipients) for item in batch)
            self.stats.rows_written += rows
            metrics.ROWS.inc(rows)
            metrics.BATCHES.inc()
            metrics.BATCH_SIZE.observe(len(batch))
        for item in batch:
            if item.abandoned:
                # Its sender was told 451 while the write went through: it will
                # send again, so this copy must go.
                self._safe.owe_revoke(item.envelope.id)
            self._release(item)

    def _release(self, item: Item) -> None:
        """The message is safe (committed or on disk): tell its waiter, drop its spool file."""
        self._forget(item)
        if item.committed is not None and not item.committed.done():
            item.committed.set_result(None)
        if item.spool_path is not None:
            self._safe.replayed(item.spool_path)

    # Shutdown ----------------------------------------------------------------

    async def drain(
        self,
        task: asyncio.Future[None],
        until: Callable[[Awaitable[object], float], Awaitable[bool]],
        timeout: float,
    ) -> int:
        """Write what is queued (waiting with `until`, up to `timeout`), spool
        the rest, and stop the writer `task`. Returns how many were spooled."""
        await until(self._idle.wait(), timeout)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return self._safe.spool_left(self._in_flight, [*self._refusals.held, *self._waiting])
