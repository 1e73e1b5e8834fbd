"""Health and heartbeat: tell a monitor we are alive only when we really are.

Healthy means: the database answers and has room for mail, the writer is
running, not stuck (its oldest unwritten message is younger than
WRITER_STUCK_AFTER) and not refused every row, the spool is writable, and
the lists the policy needs are loaded. The heartbeat
GETs HEARTBEAT_URL only then, so the monitor alerts when we are up but
useless. It never raises; why it did not ping is logged at most once a
minute per reason, so one reason never hides another.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable

import httpx

from . import db
from .sources import ListsState
from .store import BatchWriter

log = logging.getLogger("app.heartbeat")

WRITER_STUCK_AFTER = 60.0
PING_TIMEOUT = 10.0
LOG_EVERY = 60.0

Readiness = Callable[[], Awaitable[tuple[bool, list[str]]]]


@dataclasses.dataclass(frozen=True)
class Health:
    ok: bool
    problems: tuple[str, ...]


async def check_health(pool: db.Pool, writer: BatchWriter, lists: ListsState) -> Health:
    problems = []
    try:
        async with asyncio.timeout(5):
            await db.ping(pool)
    except Exception as error:
        problems.append(f"database unreachable: {error!r}")
    if not writer.running:
        problems.append("writer not running")
    if writer.spool_error is not None:
        problems.append(f"spool not writable: {writer.spool_error}")
    if writer.store_full is not None:
        problems.append(f"mail store full: {writer.store_full}")
    if writer.refusing is not None:
        problems.append(f"database refuses mail: {writer.refusing}")
    age = writer.oldest_age()
    if age > WRITER_STUCK_AFTER:
        problems.append(f"writer stuck: oldest queued message is {age:.0f}s old")
    if not lists.current.ready:
        problems.append("lists not loaded")
    return Health(not problems, tuple(problems))


class Heartbeat:
    def __init__(self, url: str, client: httpx.AsyncClient, ready: Readiness) -> None:
        self._url = url
        self._client = client
        self._ready = ready
        self._last_logged: dict[str, float] = {}

    def _log(self, reason: str, text: str) -> None:
        now = time.monotonic()
        if now - self._last_logged.get(reason, -LOG_EVERY) >= LOG_EVERY:
            log.warning("[heartbeat] %s", text)
            self._last_logged[reason] = now

    async def once(self) -> bool:
        """Ping if healthy; True if a ping was sent and answered 2xx."""
        ok, problems = await self._ready()
        if not ok:
            for problem in problems:
                self._log(problem.partition(":")[0], f"unhealthy, not pinging: {problem}")
            return False
        try:
            # httpx timeouts are per step: bound the whole request.
            async with asyncio.timeout(PING_TIMEOUT):
                response = await self._client.get(self._url)
            response.raise_for_status()
        except Exception as error:
            self._log("ping failed", f"ping failed: {error!r}")
            return False
        return True
