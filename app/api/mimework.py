"""MIME work off the API's event loop: parsing stored raw messages, reading a
part's bytes, making thumbnails.

A raw message can be tens of megabytes of CPU-bound Python work; on the
loop it would hold every other request and stream. So:

- Small work runs where it is asked (on the loop): a raw message of at most
  INLINE_BYTES with at most INLINE_BOUNDARIES boundary-like lines costs a
  few milliseconds, less than sending it to a process.
- Everything else runs in a small pool of worker processes (a thread would
  not do: CPU-bound Python holds the GIL the loop needs), started with the
  API, each task bounded by mime.MAX_PARTS and the message size limit.
- A parse is reused: `parsed()` keeps its result per raw message id in an
  LRU bounded in bytes (CACHE_BYTES), and requests for a message being
  parsed await that one parse (shielded: a client that goes away does not
  cancel it for the others).

A worker process that dies (killed, out of memory) breaks the pool: it is
made again and the task tried once more there. Workers ignore SIGINT: a
Ctrl-C in a terminal is the API's to handle (it shuts the pool down).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import multiprocessing
import signal
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from . import mime, thumbs

log = logging.getLogger("app.api")

WORKERS = 2
INLINE_BYTES = 64 * 1024
INLINE_BOUNDARIES = 32
CACHE_BYTES = 32 * 1024 * 1024

T = TypeVar("T")


def is_small(raw: bytes) -> bool:
    """Cheap to parse on the loop: few bytes and few parts (every part
    begins with a line starting `--`; counting them is a C-speed scan)."""
    return len(raw) <= INLINE_BYTES and raw.count(b"\n--") <= INLINE_BOUNDARIES


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class MimeWork:
    def __init__(self, workers: int = WORKERS, cache_bytes: int = CACHE_BYTES) -> None:
        self._workers = workers
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._cache: collections.OrderedDict[uuid.UUID, mime.Parsed] = collections.OrderedDict()
        self._cache_bytes = cache_bytes
        self._cached = 0
        self._parsing: dict[uuid.UUID, asyncio.Task[mime.Parsed]] = {}

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=self._workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_ignore_sigint,
            )
        return self._pool

    def warm(self) -> None:
        """Start the worker processes now (not awaited): a process starting
        costs a few hundred milliseconds of CPU that no request should wait for."""
        pool = self._executor()
        for _ in range(self._workers):
            pool.submit(int)

    async def _elsewhere(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            pool = self._executor()
            try:
                return await loop.run_in_executor(pool, fn, *args)
            except concurrent.futures.BrokenExecutor:
                log.error(
                    "[api] a MIME worker process died (attempt %d): starting new ones", attempt
                )
                if self._pool is pool:
                    self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
        raise RuntimeError("MIME worker processes keep dying")

    async def _run(self, small: bool, fn: Callable[..., T], *args: Any) -> T:
        return fn(*args) if small else await self._elsewhere(fn, *args)

    def cached(self, key: uuid.UUID) -> mime.Parsed | None:
        """The parse of raw message `key` if it is at hand (spares reading the raw)."""
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
        return found

    async def parsed(self, key: uuid.UUID, raw: bytes) -> mime.Parsed:
        """mime.summarize(raw), `key` naming the raw message (its id)."""
        found = self.cached(key)
        if found is not None:
            return found
        task = self._parsing.get(key)
        if task is None:
            task = asyncio.ensure_future(self._run(is_small(raw), mime.summarize, raw))
            self._parsing[key] = task
            task.add_done_callback(lambda done: self._parsed(key, done))
        return await asyncio.shield(task)

    def _parsed(self, key: uuid.UUID, task: asyncio.Task[mime.Parsed]) -> None:
        del self._parsing[key]
        if task.cancelled() or task.exception() is not None:
            return
        result = task.result()
        weight = result.weight()
        if weight > self._cache_bytes // 4:
            return  # one message must not empty the cache
        self._cache[key] = result
        self._cached += weight
        while self._cached > self._cache_bytes:
            _, old = self._cache.popitem(last=False)
            self._cached -= old.weight()

    async def part(self, raw: bytes, part_id: str) -> tuple[mime.Part, bytes] | None:
        """mime.part_content(raw, part_id), off the loop unless small."""
        return await self._run(is_small(raw), mime.part_content, raw, part_id)

    async def thumbnail(self, data: bytes) -> bytes:
        """thumbs.thumbnail(data), always in a worker process (an image's
        decoding is C work of its own, bounded by thumbs' limits)."""
        return await self._elsewhere(thumbs.thumbnail, data)

    async def close(self) -> None:
        for task in list(self._parsing.values()):
            task.cancel()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
