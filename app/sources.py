"""List sources: domains, bans and private_email from Supabase or PostgreSQL.

Each refresh reads one table whole and swaps a new Lists snapshot in a
single assignment, so a check never sees half-old, half-new lists. A failed
refresh raises and keeps the last good snapshot (run_every logs and counts).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any, Protocol

from . import db, metrics
from .config import Settings
from .policy import Lists, build_bans, build_domains, build_private

log = logging.getLogger("app.sources")

SUPABASE_PAGE = 1000  # PostgREST's default max rows per response


class Source(Protocol):
    name: str

    async def fetch(self, table: str) -> list[dict[str, Any]]: ...


class PostgresSource:
    name = "postgres"

    def __init__(self, pool: db.Pool) -> None:
        self._pool = pool

    async def fetch(self, table: str) -> list[dict[str, Any]]:
        return await db.fetch_list(self._pool, table)


class SupabaseSource:
    """Reads through supabase-py (imported only here: it is heavy), paging past 1000 rows."""

    name = "supabase"

    def __init__(self, url: str, key: str) -> None:
        self._url = url
        self._key = key
        self._client: Any = None

    async def fetch(self, table: str) -> list[dict[str, Any]]:
        if self._client is None:
            from supabase import acreate_client

            self._client = await acreate_client(self._url, self._key)
        rows: list[dict[str, Any]] = []
        while True:
            page = (
                await self._client.table(table)
                .select(db.LIST_COLUMNS[table])
                .range(len(rows), len(rows) + SUPABASE_PAGE - 1)
                .execute()
            )
            rows += page.data
            if len(page.data) < SUPABASE_PAGE:
                return rows


def make_source(settings: Settings, pool: db.Pool) -> Source:
    if settings.lists_source == "supabase":
        assert settings.supabase_url and settings.supabase_key
        return SupabaseSource(settings.supabase_url, settings.supabase_key)
    return PostgresSource(pool)


class ListsState:
    """The current snapshot, and which tables have been loaded at least once."""

    def __init__(self, settings: Settings) -> None:
        self.current = Lists(
            whitelist_enabled=settings.use_domain_whitelist, bans_enabled=settings.use_bans
        )
        self.loaded: set[str] = set()
        self.ready = asyncio.Event()  # set once every list the policy needs is loaded

    def get(self) -> Lists:
        return self.current


async def refresh_once(state: ListsState, source: Source, table: str) -> None:
    """Load one table from `source` and swap it into the snapshot.

    A failure raises and leaves the snapshot as it was (run_every counts it).
    """
    rows = await source.fetch(table)
    problems: list[str] = []
    if table == "domains":
        domains, problems = build_domains(rows)
        state.current = dataclasses.replace(state.current, domains=domains)
        if not domains and state.current.whitelist_enabled and table not in state.loaded:
            log.warning(
                "[lists] the domain whitelist is empty: every recipient gets 550. "
                "Add one with `python -m app domains add example.com`, "
                "or set USE_DOMAIN_WHITELIST=false to accept every domain"
            )
    elif table == "bans":
        bans, problems = build_bans(rows)
        state.current = dataclasses.replace(state.current, bans=bans)
    else:
        state.current = dataclasses.replace(state.current, private=build_private(rows))
    for problem in problems[:20]:
        log.warning("[lists] %s", problem)
    if table not in state.loaded:
        log.info("[lists] %s loaded from %s: %d rows", table, source.name, len(rows))
    state.loaded.add(table)
    if state.current.ready:
        state.ready.set()
    metrics.LIST_LOADED.labels(table).set(time.time())
