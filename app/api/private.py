"""private_email as the SMTP service sees it: the same source, the same normalisation.

Websites write private_email rows as people type them: mixed case, stray
spaces, IDN domains in Unicode (`vip@例え.jp`). Mail is stored under the
normalised recipient (`vip@xn--r8jz45g.jp`), so a SQL comparison with the
row as written cannot tell which addresses are private. The API therefore
reads the table exactly as the service does (sources.make_source:
PostgreSQL first, then Supabase) and normalises it with the service's own
policy.build_private, into a set swapped whole on each refresh.

Bound: a row added to private_email protects its address (and ends open
streams of it) within PRIVATE_REFRESH seconds. Until the first load has
succeeded every address counts as private (closed, not open).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import asyncpg

from ..config import Settings
from ..policy import build_private
from ..sources import make_source
from ..tasks import retry_until_done, run_every

log = logging.getLogger("app.api")

TABLE = "private_email"


class PrivateAddresses:
    """The normalised private_email addresses; `address in private`."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self._source = make_source(settings, pool)
        self._interval = settings.private_refresh
        self._addresses: frozenset[str] | None = None  # None: not loaded yet

    def __contains__(self, address: str) -> bool:
        return self._addresses is None or address in self._addresses

    async def refresh(self) -> frozenset[str]:
        """Load the table again; the addresses that became or stopped being private."""
        loaded = await self._source.fetch(TABLE)
        addresses = build_private(loaded.rows)
        before = self._addresses
        self._addresses = addresses
        if before is None:
            log.debug("[api] %s: %d addresses (from %s)", TABLE, len(addresses), loaded.origin)
            return frozenset()
        return addresses ^ before

    async def load(self) -> None:
        """The first load, retried until it succeeds (start-up waits for it)."""
        await retry_until_done(f"api:{TABLE}", self.refresh)

    async def keep_fresh(self, changed: Callable[[frozenset[str]], None]) -> None:
        """Refresh every PRIVATE_REFRESH seconds, telling `changed` what changed
        (cancel to stop); a failed refresh keeps the last set."""

        async def once() -> None:
            if difference := await self.refresh():
                changed(difference)

        await run_every(f"api:{TABLE}", self._interval, once)
