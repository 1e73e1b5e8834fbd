"""Store stage: the adaptive batch writer between the queue and PostgreSQL.

The promise behind a 250: a message handed to `submit()` ends in exactly one
of three places: committed to the database (once; writes are idempotent by
pre-made ids), spooled to local disk with fsync (shutdown with the database
down; replayed at the next start), or set aside on disk as a dead letter
(a row PostgreSQL rejects). In durable mode `submit()` returns a future that
is resolved only after that COMMIT or fsync, so one commit releases every
session whose message was in the batch (group commit). A waiter that gives
up cancels its future, and a message not yet in flight is then dropped:
its sender got no 250 and will retry.

Batching: the writer takes what is queued, up to BATCH_MAX messages or
BATCH_BYTES; under light load it flushes at once, under load it lingers up
to BATCH_DELAY_MS (scaled by how full the last batch was) to fill the next.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import multiprocessing
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from . import db, metrics
from .model import Envelope, ParsedMail
from .parse import parse
from .spool import Spool

if TYPE_CHECKING:
    from .auth import AuthResult

log = logging.getLogger("app.store")

BATCH_BYTES = 8 * 1024 * 1024
# Messages larger than this are parsed in a separate process: parsing 20 MB
# takes seconds of CPU, and in a thread it would hold the GIL against the
# event loop that answers every other session.
PARSE_ELSEWHERE = 1024 * 1024
PARSE_SLICE = 0.005  # seconds of parsing between yields to the event loop
BACKOFF_FIRST, BACKOFF_MAX = 0.05, 2.0
# An error we cannot classify is retried this often before the batch is
# searched for a bad row (a broken connection can raise odd client errors).
UNKNOWN_RETRIES = 5
STALLED_AFTER = 1.0  # seconds without a commit before backpressure gives up waiting
OUTAGE_PROBE = 0.5  # seconds between database probes while idle in an outage


class QueueFull(Exception):
    """The writer cannot take this message now; the sender should retry (451)."""


@dataclasses.dataclass(eq=False)
class Item:
    envelope: Envelope
    committed: asyncio.Future[None] | None = None
    spool_path: Path | None = None
    parsed: ParsedMail | None = None
    # The sender-authentication checks, started when the message is queued.
    auth: asyncio.Task[AuthResult] | None = None
    enqueued: float = dataclasses.field(default_factory=time.monotonic)

    @property
    def abandoned(self) -> bool:
        return self.committed is not None and self.committed.cancelled()


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
        authenticate: Callable[[Envelope], Awaitable[AuthResult]] | None = None,
    ) -> None:
        self._pool = pool
        self._authenticate = authenticate
        self._checking: set[asyncio.Task[AuthResult]] = set()
        self._spool = spool
        self._batch_max = batch_max
        self._batch_delay = batch_delay
        self._queue: asyncio.Queue[Item] = asyncio.Queue(queue_size)
        # Past the high-water mark new messages wait for room (backpressure)
        # rather than being refused at once; the room event is set below it.
        self._high_water = max(1, queue_size * 8 // 10)
        self._room = asyncio.Event()
        self._room.set()
        self._last_commit = time.monotonic()
        self._queue_bytes_max = queue_bytes
        self._queued_bytes = 0
        self._in_flight: list[Item] = []
        self._last_batch_len = 1
        self._parser_pool: concurrent.futures.ProcessPoolExecutor | None = None
        # Abandoned after an ambiguous failed write: delete with the next write.
        self._revoke: list[uuid.UUID] = []
        self.outage = False  # the last write attempt failed for a transient reason
        self.stats = WriterStats()

    # Producer side -----------------------------------------------------------

    def submit(self, envelope: Envelope, wait: bool) -> asyncio.Future[None] | None:
        """Queue `envelope`; with `wait`, return a future resolved after its commit."""
        size = len(envelope.raw)
        if self._queue.full() or self._queued_bytes + size > self._queue_bytes_max:
            raise QueueFull("queue full")
        if wait and self.outage:
            raise QueueFull("database unreachable")
        item = self._item(envelope, asyncio.get_running_loop().create_future() if wait else None)
        self._queue.put_nowait(item)
        self._queued_bytes += size
        metrics.QUEUE_DEPTH.set(self._queue.qsize())
        if self._queue.qsize() >= self._high_water:
            self._room.clear()
        return item.committed

    def _item(
        self,
        envelope: Envelope,
        committed: asyncio.Future[None] | None = None,
        spool_path: Path | None = None,
    ) -> Item:
        item = Item(envelope, committed, spool_path)
        if self._authenticate is not None and envelope.auth is None:
            # Checks run while the message waits for its batch: off the 250's path.
            item.auth = asyncio.ensure_future(self._authenticate(envelope))
            self._checking.add(item.auth)
            item.auth.add_done_callback(self._checking.discard)
        return item

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

    async def replay(self) -> int:
        """Queue the spooled messages of an earlier run; files go after their commit."""
        count = 0
        for path, envelope in self._spool.pending():
            await self._queue.put(self._item(envelope, spool_path=path))
            self._queued_bytes += len(envelope.raw)
            count += 1
        if count:
            log.warning("[store] replaying %d spooled messages", count)
        return count

    def oldest_age(self) -> float:
        """Seconds the oldest unwritten message has waited (0 if none)."""
        oldest = self._in_flight[0] if self._in_flight else None
        if oldest is None and not self._queue.empty():
            oldest = self._queue._queue[0]  # type: ignore[attr-defined]
        return time.monotonic() - oldest.enqueued if oldest else 0.0

    # Consumer side -----------------------------------------------------------

    async def run(self) -> None:
        while True:
            batch = await self._next_batch()
            # Left set if cancelled mid-write, so drain() can spool the batch.
            self._in_flight = batch
            live = [item for item in batch if not item.abandoned]
            await self._parse(live)
            await self._authenticated(live)
            if live:
                await self._write(live)
            self._in_flight = []
            for item in batch:
                self._queued_bytes -= len(item.envelope.raw)
                self._queue.task_done()
            if self._queue.qsize() < self._high_water:
                self._room.set()
            metrics.QUEUE_DEPTH.set(self._queue.qsize())

    async def _next_batch(self) -> list[Item]:
        while True:
            if self.outage or self._revoke:
                # Nothing may arrive while durable sessions get 451 for the
                # outage: probe, so the flag (and pending revokes) clear.
                try:
                    async with asyncio.timeout(OUTAGE_PROBE):
                        first = await self._queue.get()
                    break
                except TimeoutError:
                    await self._write([])
                    continue
            first = await self._queue.get()
            break
        batch = [first]
        if self._batch_delay and self._last_batch_len > 1 and self._queue.qsize() < self._batch_max:
            # Under load, linger briefly so one commit carries more messages.
            fill = min(1.0, self._last_batch_len / self._batch_max)
            await asyncio.sleep(self._batch_delay * fill)
        size = len(batch[0].envelope.raw)
        while len(batch) < self._batch_max and size < BATCH_BYTES and not self._queue.empty():
            item = self._queue.get_nowait()
            batch.append(item)
            size += len(item.envelope.raw)
        self._last_batch_len = len(batch)
        return batch

    async def _parse(self, items: list[Item]) -> None:
        slice_started = time.perf_counter()
        for item in items:
            if item.parsed is not None:
                continue
            raw = item.envelope.as_received
            if len(raw) > PARSE_ELSEWHERE:
                item.parsed = await self._parse_elsewhere(raw)
                continue
            item.parsed = parse(raw)
            if time.perf_counter() - slice_started > PARSE_SLICE:
                # Let sessions run, but in slices: yielding after every message
                # would let a busy listener starve the writer.
                await asyncio.sleep(0)
                slice_started = time.perf_counter()

    async def _authenticated(self, items: list[Item]) -> None:
        """Put each check's result on its envelope (each check is time-bounded)."""
        for item in items:
            if item.auth is not None:
                auth = await item.auth
                item.envelope = dataclasses.replace(item.envelope, auth=auth)
                item.auth = None

    async def _parse_elsewhere(self, raw: bytes) -> ParsedMail:
        """Parse in the parser process (started on first use); a thread if it broke."""
        if self._parser_pool is None:
            self._parser_pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn")
            )
        try:
            return await asyncio.get_running_loop().run_in_executor(self._parser_pool, parse, raw)
        except concurrent.futures.BrokenExecutor:
            log.error("[store] the parser process died; parsing in a thread")
            self._parser_pool = None
            return await asyncio.to_thread(parse, raw)

    def close(self) -> None:
        for check in list(self._checking):  # their messages were spooled: checked on replay
            check.cancel()
        if self._parser_pool is not None:
            self._parser_pool.shutdown(wait=False, cancel_futures=True)

    async def _write(self, batch: list[Item]) -> None:
        """Commit `batch`, retrying transient failures; split it on a bad row.

        An empty batch still runs the pending revokes (and probes the database).
        """
        backoff = BACKOFF_FIRST
        unknown_failures = 0
        while True:
            started = time.perf_counter()
            revoke = list(self._revoke)
            try:
                await db.insert_batch(
                    self._pool,
                    [(item.envelope, item.parsed) for item in batch],  # type: ignore[misc]
                    revoke,
                )
            except Exception as error:
                kind = db.classify(error)
                if kind == db.UNKNOWN:
                    unknown_failures += 1
                if kind == db.REJECT or unknown_failures > UNKNOWN_RETRIES:
                    await self._isolate(batch, error)
                    return
                if not self.outage:
                    log.warning("[store] database write failed, retrying: %r", error)
                self.outage = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                batch = self._without_abandoned(batch)
                continue
            if self.outage:
                log.warning("[store] database writes recovered")
            self.outage = False
            del self._revoke[: len(revoke)]
            metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
            self._committed(batch)
            return

    def _without_abandoned(self, batch: list[Item]) -> list[Item]:
        """Drop messages whose waiter gave up (451) and revoke them, since the
        failed attempt may in fact have committed them."""
        keep = []
        for item in batch:
            if item.abandoned:
                self._revoke.append(item.envelope.id)
            else:
                keep.append(item)
        return keep

    async def _isolate(self, batch: list[Item], error: Exception) -> None:
        """A row was rejected: halve the batch until the bad message is alone."""
        if not batch:
            log.error("[store] database write failed: %r", error)
            return
        if len(batch) > 1:
            middle = len(batch) // 2
            await self._write(batch[:middle])
            await self._write(batch[middle:])
            return
        item = batch[0]
        reason = f"{type(error).__name__}: {error}"
        path = self._spool.save_dead(item.envelope, reason)
        log.error(
            "[store] message %s rejected by the database (%s); kept in %s",
            item.envelope.id,
            reason,
            path,
        )
        self.stats.dead_letters += 1
        metrics.DEAD_LETTERS.inc()
        self._release(item)

    def _committed(self, batch: list[Item]) -> None:
        self._last_commit = time.monotonic()
        if batch:
            rows = sum(len(item.envelope.recipients) for item in batch)
            self.stats.rows_written += rows
            metrics.ROWS.inc(rows)
            metrics.BATCHES.inc()
            metrics.BATCH_SIZE.observe(len(batch))
        for item in batch:
            self._release(item)

    def _release(self, item: Item) -> None:
        """The message is safe (committed or on disk): tell its waiter, drop its spool file."""
        if item.committed is not None and not item.committed.done():
            item.committed.set_result(None)
        if item.spool_path is not None:
            item.spool_path.unlink(missing_ok=True)

    # Shutdown ----------------------------------------------------------------

    async def drain(self, task: asyncio.Task[None], timeout: float) -> int:
        """Write what is queued within `timeout`, spool the rest; stop `task`.

        Returns how many messages were spooled.
        """
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            pass
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        left = list(self._in_flight)
        while not self._queue.empty():
            left.append(self._queue.get_nowait())
        spooled = 0
        for item in left:
            if item.abandoned or item.spool_path is not None:
                continue  # no 250 was given, or it is on disk already
            self._spool.save_pending(item.envelope)
            spooled += 1
            self._release(item)
        metrics.SPOOLED.inc(spooled)
        if spooled:
            log.warning(
                "[store] database unavailable at shutdown: spooled %d messages to %s",
                spooled,
                self._spool.pending_dir,
            )
        return spooled
