"""Health and heartbeat: tell a monitor we are alive only when we really are.

Healthy means: the database answers, the writer is not stuck (its oldest
unwritten message is younger than WRITER_STUCK_AFTER), and the lists the
policy needs are loaded. `heartbeat_once` GETs HEARTBEAT_URL only then, so
the monitor alerts when we are up but useless. It never raises; failures
are logged at most once a minute.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

import httpx

from . import db
from .sources import ListsState
from .store import BatchWriter

log = logging.getLogger("app.heartbeat")

WRITER_STUCK_AFTER = 60.0
PING_TIMEOUT = 10.0
LOG_EVERY = 60.0


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
    age = writer.oldest_age()
    if age > WRITER_STUCK_AFTER:
        problems.append(f"writer stuck: oldest queued message is {age:.0f}s old")
    if not lists.current.ready:
        problems.append("lists not loaded")
    return Health(not problems, tuple(problems))


class Heartbeat:
    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        pool: db.Pool,
        writer: BatchWriter,
        lists: ListsState,
    ) -> None:
        self._url = url
        self._client = client
        self._pool = pool
        self._writer = writer
        self._lists = lists
        self._last_logged = 0.0

    def _log(self, text: str) -> None:
        now = time.monotonic()
        if now - self._last_logged >= LOG_EVERY:
            log.warning("[heartbeat] %s", text)
            self._last_logged = now

    async def once(self) -> bool:
        """Ping if healthy; True if a ping was sent and answered 2xx."""
        health = await check_health(self._pool, self._writer, self._lists)
        if not health.ok:
            self._log("unhealthy, not pinging: " + "; ".join(health.problems))
            return False
        try:
            # httpx timeouts are per step: bound the whole request.
            async with asyncio.timeout(PING_TIMEOUT):
                response = await self._client.get(self._url)
            response.raise_for_status()
        except Exception as error:
            self._log(f"ping failed: {error!r}")
            return False
        return True
