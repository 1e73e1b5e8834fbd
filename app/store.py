"""Store stage: the batch writer between the prepare stage and PostgreSQL.

The promise behind a 250: a message handed to `submit()` ends in exactly one
of three places: committed to the database (once; writes are idempotent by
pre-made ids), spooled to local disk with fsync (shutdown with the database
down; replayed at the next start), or set aside on disk as a dead letter (a
row PostgreSQL rejects). Until then it stays in this writer's memory, and
the writer never gives it up: a database outage is retried, an unexpected
error puts the batch back at the front of the line, and a spool that cannot
be written keeps the message here while new mail is refused (451).

In durable mode `submit()` returns a future that is resolved only after that
COMMIT or fsync, so one commit releases every session whose message was in
the batch (group commit). A waiter that gives up (451) cancels its future:
a message not yet written is then dropped, and one whose write may have
committed is revoked (deleted by id in the next write; the id is kept in
the spool until then, so a restart does not forget it).

Batching: the writer takes what is waiting, up to BATCH_MAX messages or
BATCH_BYTES; under light load it writes at once, under load it lingers up
to BATCH_DELAY_MS (scaled by how full the last batch was) to fill the next.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
import uuid
from asyncio import FIRST_COMPLETED
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from . import db, metrics
from .model import Envelope, Prepared
from .parse import EMPTY
from .spool import Spool

log = logging.getLogger("app.store")

BATCH_BYTES = 8 * 1024 * 1024
BACKOFF_FIRST, BACKOFF_MAX = 0.05, 2.0
# An error we cannot classify is retried this often before the batch is
# searched for a bad row (a broken connection can raise odd client errors).
UNKNOWN_RETRIES = 5
STALLED_AFTER = 1.0  # seconds without a commit before backpressure gives up waiting
IDLE_PROBE = 0.5  # seconds between database probes while idle with work owed


class QueueFull(Exception):
    """The writer cannot take this message now; the sender should retry (451)."""


@dataclasses.dataclass(eq=False)
class Item:
    envelope: Envelope
    prepared: asyncio.Future[Prepared]
    committed: asyncio.Future[None] | None = None  # durable mode: the 250 waits on it
    spool_path: Path | None = None  # replayed from this spool file
    enqueued: float = dataclasses.field(default_factory=time.monotonic)
    done: bool = False  # committed, on disk, or dropped after a 451: not ours to keep

    @property
    def abandoned(self) -> bool:
        """The sender was told 451 (its durable wait gave up)."""
        return self.committed is not None and self.committed.cancelled()


def with_verdict(item: Item) -> Envelope:
    """The envelope to put on disk: with its sender-authentication verdict when
    the checks have finished (a replay need not, and later cannot, redo them)."""
    prepared = item.prepared
    if prepared.done() and not prepared.cancelled() and prepared.exception() is None:
        return dataclasses.replace(item.envelope, auth=prepared.result().auth)
    return item.envelope


@dataclasses.dataclass
class WriterStats:
    """Totals for the shutdown log line; the metrics carry the rest."""

    rows_written: int = 0
    dead_letters: int = 0


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
    ) -> None:
        self._pool = pool
        self._spool = spool
        self._batch_max = batch_max
        self._batch_delay = batch_delay
        self._queue_size = queue_size
        self._queue_bytes_max = queue_bytes
        self._waiting: collections.deque[Item] = collections.deque()
        self._arrived = asyncio.Event()
        self._in_flight: list[Item] = []  # taken from _waiting, not yet safe
        self._queued_bytes = 0
        # Past the high-water mark new messages wait for room (backpressure)
        # rather than being refused at once; the room event is set below it.
        self._high_water = max(1, queue_size * 8 // 10)
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()  # nothing waiting or in flight
        self._idle.set()
        self._last_commit = time.monotonic()
        self._last_batch_len = 1
        # Abandoned after a write that may have committed: deleted with the next write.
        self._revoke: list[uuid.UUID] = []
        # Dead letters the spool could not take yet (it is retried each cycle).
        self._unsaved_dead: list[tuple[Item, str]] = []
        self.outage = False  # the last write attempt failed for a transient reason
        self.running = False  # the writer loop is alive
        self.spool_error: str | None = None  # why the spool cannot be written, if so
        self.stats = WriterStats()

    # Producer side -----------------------------------------------------------

    def submit(
        self, envelope: Envelope, prepared: asyncio.Future[Prepared], wait: bool
    ) -> asyncio.Future[None] | None:
        """Queue a message; with `wait`, return a future resolved after its commit.

        Raises QueueFull (the sender gets 451) when memory is full, when the
        spool is broken, or in durable mode while the database is unreachable.
        """
        size = len(envelope.raw)
        if len(self._waiting) >= self._queue_size or (
            self._queued_bytes + size > self._queue_bytes_max
        ):
            raise QueueFull("queue full")
        if self.spool_error is not None:
            raise QueueFull("spool not writable")
        if not self.running:
            raise QueueFull("writer not running")
        if wait and self.outage:
            raise QueueFull("database unreachable")
        committed = asyncio.get_running_loop().create_future() if wait else None
        self._enqueue(Item(envelope, prepared, committed))
        return committed

    def _enqueue(self, item: Item) -> None:
        self._waiting.append(item)
        self._queued_bytes += len(item.envelope.raw)
        self._arrived.set()
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
        self._revoke += [i for i in self._spool.revokes() if i not in self._revoke]
        count = 0
        for path, envelope in self._spool.pending():
            item = Item(envelope, prepare(envelope), spool_path=path)
            self._enqueue(item)
            count += 1
        if count or self._revoke:
            log.warning(
                "[store] replaying %d spooled messages and %d revokes", count, len(self._revoke)
            )
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
        self._check_spool()
        batch = await self._ready(await self._next_batch())
        for item in batch:
            if item.abandoned:  # 451 given before any write: nothing is owed
                self._forget(item)
        live = [item for item in batch if not item.abandoned]
        if live or self._revoke or self.outage:
            await self._write(live, [self._prepared(item) for item in live])
        self._in_flight = []
        if len(self._waiting) < self._high_water:
            self._room.set()
        if not self._waiting:
            self._idle.set()
        metrics.QUEUE_DEPTH.set(len(self._waiting))

    async def _next_batch(self) -> list[Item]:
        """Take the next batch; every item counts as in flight once taken.

        While idle with work owed (revokes, a database outage, a spool to
        retry), return an empty batch every IDLE_PROBE seconds, so the owed
        work runs even when no mail arrives (new mail gets 451 meanwhile).
        """
        if self._in_flight:  # put back after an error: written first
            return list(self._in_flight)
        while not self._waiting:
            self._arrived.clear()
            if self.outage or self._revoke or self.spool_error is not None:
                try:
                    await asyncio.wait_for(self._arrived.wait(), IDLE_PROBE)
                except TimeoutError:
                    return []
            else:
                await self._arrived.wait()
        batch = self._in_flight
        self._take(batch)
        if self._batch_delay and self._last_batch_len > 1 and len(batch) < self._batch_max:
            # Under load, linger briefly so one commit carries more messages.
            fill = min(1.0, self._last_batch_len / self._batch_max)
            await asyncio.sleep(self._batch_delay * fill)
            self._take(batch)
        self._last_batch_len = len(batch)
        return list(batch)

    async def _ready(self, batch: list[Item]) -> list[Item]:
        """The items of `batch` whose preparation is done, waiting for the
        first to finish (taking newly arrived mail meanwhile) if none is; the
        others go back to the front of the line, so one sender whose DNS does
        not answer (up to AUTH_TIMEOUT) delays no one."""
        while batch and not any(item.prepared.done() for item in batch):
            self._arrived.clear()
            arrival = asyncio.ensure_future(self._arrived.wait())
            waiting: list[asyncio.Future[Any]] = [item.prepared for item in batch]
            await asyncio.wait([*waiting, arrival], return_when=FIRST_COMPLETED)
            arrival.cancel()
            if self._waiting:  # newer mail may be ready sooner: take it too
                self._take(self._in_flight)
                batch = list(self._in_flight)
        ready = [item for item in batch if item.prepared.done()]
        later = [item for item in batch if not item.prepared.done()]
        if later:
            self._waiting.extendleft(reversed(later))
            self._in_flight = list(ready)
        return ready

    def _take(self, batch: list[Item]) -> None:
        size = sum(len(item.envelope.raw) for item in batch)
        while self._waiting and len(batch) < self._batch_max and size < BATCH_BYTES:
            item = self._waiting.popleft()
            batch.append(item)
            size += len(item.envelope.raw)

    def _put_back(self, items: list[Item]) -> None:
        """After an unexpected error: items not yet safe stay in flight, written first."""
        unsaved = {id(item) for item, _ in self._unsaved_dead}
        self._in_flight = [item for item in items if not item.done and id(item) not in unsaved]

    def _forget(self, item: Item) -> None:
        """`item` leaves the writer: written, on disk, or dropped before any write."""
        item.done = True
        self._queued_bytes -= len(item.envelope.raw)

    def _prepared(self, item: Item) -> Prepared:
        """The finished preparation of `item`."""
        prepared = item.prepared
        if not prepared.cancelled() and prepared.exception() is None:
            return prepared.result()
        # A preparation never raises; if one does, or was cancelled, store it raw.
        log.error("[store] preparing %s failed: storing it unparsed", item.envelope.id)
        return Prepared(item.envelope, EMPTY, None)

    async def _write(self, batch: list[Item], prepared: list[Prepared]) -> None:
        """Commit `batch`, retrying transient failures; split it on a bad row.

        An empty batch still runs the pending revokes (and probes the database).
        """
        backoff = BACKOFF_FIRST
        unknown_failures = 0
        while True:
            started = time.perf_counter()
            revoke = list(self._revoke)
            try:
                await db.insert_batch(self._pool, prepared, revoke)
            except Exception as error:
                kind = db.classify(error)
                if kind == db.UNKNOWN:
                    unknown_failures += 1
                if kind == db.REJECT or unknown_failures > UNKNOWN_RETRIES:
                    await self._isolate(batch, prepared, error)
                    return
                if not self.outage:
                    log.warning("[store] database write failed, retrying: %r", error)
                    self.outage = True
                    self._check_spool()  # what is accepted meanwhile may have to go there
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                # The failed attempt may have committed: a message whose
                # sender gave up meanwhile is revoked, not retried.
                batch, prepared = self._without_abandoned(batch, prepared)
                continue
            if self.outage:
                log.warning("[store] database writes recovered")
            self.outage = False
            del self._revoke[: len(revoke)]
            self._forget_revokes(revoke)
            metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
            self._committed(batch)
            return

    def _without_abandoned(
        self, batch: list[Item], prepared: list[Prepared]
    ) -> tuple[list[Item], list[Prepared]]:
        kept: list[tuple[Item, Prepared]] = []
        for item, ready in zip(batch, prepared, strict=True):
            if item.abandoned:
                self._add_revoke(item.envelope.id)
                self._forget(item)
            else:
                kept.append((item, ready))
        return [item for item, _ in kept], [ready for _, ready in kept]

    def _add_revoke(self, message_id: uuid.UUID) -> None:
        """Owe a delete of `message_id`, kept on disk until it commits."""
        self._revoke.append(message_id)
        try:
            self._spool.save_revoke(message_id)
        except OSError as error:
            self._spool_failed(error)

    def _forget_revokes(self, message_ids: list[uuid.UUID]) -> None:
        if message_ids:
            try:
                self._spool.forget_revokes(message_ids)
            except OSError as error:  # a stale revoke file only deletes nothing later
                log.warning("[store] could not remove revoke files: %r", error)

    async def _isolate(self, batch: list[Item], prepared: list[Prepared], error: Exception) -> None:
        """A row was rejected: halve the batch until the bad message is alone."""
        if not batch:
            log.error("[store] database write failed: %r", error)
            return
        if len(batch) > 1:
            middle = len(batch) // 2
            await self._write(batch[:middle], prepared[:middle])
            await self._write(batch[middle:], prepared[middle:])
            return
        self._save_dead(batch[0], f"{type(error).__name__}: {error}")

    def _save_dead(self, item: Item, reason: str) -> bool:
        """Set `item` aside on disk; if the spool fails, keep it here and refuse new mail."""
        try:
            path = self._spool.save_dead(with_verdict(item), reason)
        except OSError as error:
            self._spool_failed(error)
            self._unsaved_dead.append((item, reason))
            return False
        log.error(
            "[store] message %s rejected by the database (%s); kept in %s",
            item.envelope.id,
            reason,
            path,
        )
        self.stats.dead_letters += 1
        metrics.DEAD_LETTERS.inc()
        self._release(item)
        return True

    def watch_spool(self) -> None:
        """The periodic look at the spool (a cheap one; the writer probes it
        with a real file while it is needed): a spool that could not take a
        file means 451 for new mail before anything accepted depends on it."""
        problem = self._spool.problem()
        if problem is not None:
            self._spool_failed(OSError(problem))
        elif self.spool_error is not None:
            self._check_spool()

    def _check_spool(self) -> None:
        """Retry the dead letters the spool could not take, and, while it may
        be needed (a database outage: instant mode keeps taking mail into
        memory) or is known broken, check that it can take a file: new mail
        gets 451 while it cannot."""
        unsaved, self._unsaved_dead = self._unsaved_dead, []
        for index, (item, reason) in enumerate(unsaved):
            if not self._save_dead(item, reason):  # it was put back
                self._unsaved_dead += unsaved[index + 1 :]
                return
        if self.spool_error is None and not self.outage:
            return
        try:
            self._spool.check_writable()
        except OSError as error:
            self._spool_failed(error)
            return
        if self.spool_error is not None:
            log.warning("[store] the spool is writable again: accepting mail")
            self.spool_error = None

    def _spool_failed(self, error: OSError) -> None:
        if self.spool_error is None:
            log.error(
                "[store] cannot write the spool (%r): refusing new mail with 451 "
                "until it is writable; nothing accepted is dropped",
                error,
            )
        self.spool_error = repr(error)

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
                self._add_revoke(item.envelope.id)
            self._release(item)

    def _release(self, item: Item) -> None:
        """The message is safe (committed or on disk): tell its waiter, drop its spool file."""
        self._forget(item)
        if item.committed is not None and not item.committed.done():
            item.committed.set_result(None)
        if item.spool_path is not None:
            item.spool_path.unlink(missing_ok=True)

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
        for item in self._in_flight:
            if item.abandoned and not item.done:
                # No 250 was given, and its write may have committed.
                self._add_revoke(item.envelope.id)
        left = [*self._in_flight, *(item for item, _ in self._unsaved_dead), *self._waiting]
        spooled = lost = 0
        for item in left:
            if item.done or item.abandoned or item.spool_path is not None:
                continue  # written, refused with 451, or on disk already
            try:
                self._spool.save_pending(with_verdict(item))
            except OSError as error:
                lost += 1
                log.error("[store] could not spool message %s: %r", item.envelope.id, error)
                continue
            spooled += 1
            self._release(item)
        metrics.SPOOLED.inc(spooled)
        if spooled:
            log.warning(
                "[store] database unavailable at shutdown: spooled %d messages to %s",
                spooled,
                self._spool.pending_dir,
            )
        if lost:
            metrics.LOST.inc(lost)
            log.error("[store] %d acknowledged messages could not be kept", lost)
        return spooled
