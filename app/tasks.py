"""Side-task loops: `run_every` runs `fn` every `interval` seconds, with
jitter; `retry_until_done` runs a start-up step until it succeeds.

A failing run is logged (at most once a minute per task) and counted; the
loop carries on. Cancel the task to stop it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("app.tasks")


class Throttle:
    """`due()` is True at most once per `seconds`: for a log line that could
    otherwise repeat with every message (a storage or a scanner that is down)."""

    def __init__(self, seconds: float = 60.0) -> None:
        self._seconds = seconds
        self._last = -seconds

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._last < self._seconds:
            return False
        self._last = now
        return True


async def run_every(
    name: str,
    interval: float,
    fn: Callable[[], Awaitable[object]],
    *,
    jitter: float = 0.1,
    first_delay: float | None = None,
) -> None:
    failures = 0
    last_logged = 0.0
    delay = interval if first_delay is None else first_delay
    while True:
        await asyncio.sleep(delay * (1 + random.uniform(-jitter, jitter)))
        delay = interval
        try:
            await fn()
        except Exception as error:  # a periodic task must never die
            failures += 1
            now = time.monotonic()
            if now - last_logged >= 60:
                log.warning("[%s] run failed (%d failures so far): %r", name, failures, error)
                last_logged = now


STARTUP_BACKOFF_MAX = 10.0


async def retry_until_done(name: str, step: Callable[[], Awaitable[object]]) -> None:
    """Run `step` until it succeeds, backing off; log the first failure and the recovery."""
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
