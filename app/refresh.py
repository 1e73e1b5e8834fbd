"""Keeping the lists fresh: each table is reloaded every *_REFRESH seconds,
all of them at once on SIGHUP, and the one named by a NOTIFY on the lists
channel, which `python -m app domains|bans ...` sends after a change, so the
running service sees it within a moment. The LISTEN needs a session: it is
made over DATABASE_DIRECT_URL when set; behind a transaction-mode pooler
without it there is no LISTEN (said once), only the periodic reloads.

A failed refresh keeps the last good snapshot (run_every logs and counts).
While the LISTEN connection is down it is re-established with backoff, and
every table is reloaded once it is back (changes made meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from . import db
from .config import Settings
from .db_connect import Route
from .pause import TABLE as PAUSE_TABLE
from .sources import ListsState, make_source, refresh_once
from .tasks import retry_until_done, run_every

log = logging.getLogger("app.refresh")

RECONNECT_MAX = 10.0  # seconds between attempts to listen again


class ListsKeeper:
    def __init__(
        self,
        state: ListsState,
        settings: Settings,
        pool: db.Pool,
        where: Route,
        schema_ready: asyncio.Event,
    ) -> None:
        self._state = state
        self._source = make_source(settings, pool)
        self._where = where
        self._schema_ready = schema_ready
        self.tables = [("private_email", settings.private_refresh)]
        if settings.use_domain_whitelist:
            self.tables.append(("domains", settings.domains_refresh))
        if settings.use_bans:
            self.tables.append(("bans", settings.bans_refresh))
        if settings.rules_checks != "off":
            self.tables.append(("rules", settings.rules_refresh))
        self.tables.append((PAUSE_TABLE, settings.pause_refresh))
        self._refreshing: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Load every table (retrying until it loads), then keep them fresh."""
        if self._source.name == "postgres":
            await self._schema_ready.wait()  # the tables exist only once the schema is installed
        keepers = [self._keep(table, interval) for table, interval in self.tables]
        # Also with Supabase: its tables are often in the DATABASE_URL database
        # the CLI edits, and a reload costs one read of the source.
        if self._where.has_session:
            keepers.append(self._watch())
        else:
            log.warning(
                "[lists] DATABASE_URL is a transaction-mode pooler and DATABASE_DIRECT_URL "
                "is empty: no LISTEN, list changes are seen at the next *_REFRESH"
            )
        await asyncio.gather(*keepers)

    async def _keep(self, table: str, interval: float) -> None:
        if table == PAUSE_TABLE:  # always PostgreSQL's: it exists once the schema is installed
            await self._schema_ready.wait()

        async def once() -> None:
            await refresh_once(self._state, self._source, table)

        await retry_until_done(f"lists:{table}", once)
        await run_every(f"lists:{table}", interval, once)

    async def refresh_all(self) -> None:
        """Reload every table now; a failure is logged and the old list kept."""
        results = await asyncio.gather(
            *(refresh_once(self._state, self._source, table) for table, _ in self.tables),
            return_exceptions=True,
        )
        for (table, _), result in zip(self.tables, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("[lists] %s refresh failed, keeping the last list: %r", table, result)

    def reload(self) -> None:
        """Refresh every table in the background (SIGHUP)."""
        self._spawn(self.refresh_all())

    def _changed(self, table: str) -> None:
        known = [name for name, _ in self.tables]
        if table in known:
            self._spawn(refresh_once(self._state, self._source, table))
        else:
            self._spawn(self.refresh_all())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._refreshing.add(task)
        task.add_done_callback(self._refreshing.discard)

    async def _watch(self) -> None:
        """LISTEN for changes the CLI announces; reconnect when the connection drops."""
        backoff, first, failed = 0.2, True, False
        while True:
            try:
                where = self._where
                async with db.listening(
                    where.session_url, db.LISTS_CHANNEL, self._changed, where.name
                ) as closed:
                    if failed:
                        log.warning("[lists] listening for list changes again")
                    backoff, failed = 0.2, False
                    if not first:
                        self.reload()  # what changed while nobody listened
                    first = False
                    await closed.wait()
            except Exception as error:
                if not failed:
                    log.warning("[lists] cannot listen for list changes, retrying: %r", error)
                failed = True
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RECONNECT_MAX)
