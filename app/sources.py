"""List sources: domains, bans and private_email from Supabase or PostgreSQL.

Each refresh reads one table whole and swaps a new Lists snapshot in a
single assignment, so a check never sees half-old, half-new lists. A failed
refresh raises and keeps the last good snapshot (run_every logs and counts).

Supabase tables are the operator's: we never require a column the Cybertemp
README did not ask for. Pages are keyset-ordered by the primary key (`id`;
the natural key where a table has none), so rows added or removed between
pages never make others skipped or repeated; a column PostgREST says does
not exist (42703) is dropped from the request if it is optional
(domains.active) and remembered. private_email is read from PostgreSQL
first, where Cybertemp keeps it, and from Supabase when PostgreSQL's is empty.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from typing import Any, Protocol

from . import db, metrics
from .config import Settings
from .pause import TABLE as PAUSE_TABLE
from .pause import build_pause
from .policy import Lists, build_bans, build_domains, build_private
from .rules import build_rules

log = logging.getLogger("app.sources")

SUPABASE_PAGE = 1000  # PostgREST's default max rows per response
# Keyset order of each table: its primary key, then the natural key if the
# table has no `id` (a fallback key that is not unique can lose rows that
# share the value at a page boundary: bans.value, private_email.email).
ORDER_KEYS = {
    "domains": ("id", "domain"),
    "bans": ("id", "value"),
    "private_email": ("id", "email"),
    "rules": ("id",),
}
UNDEFINED_COLUMN = "42703"
UNDEFINED_TABLE = ("42P01", "PGRST205")  # PostgreSQL's, and PostgREST 12's schema cache
PRIVATE_ORDER = "private_email: PostgreSQL first, then Supabase"


@dataclasses.dataclass(frozen=True)
class Loaded:
    rows: list[dict[str, Any]]
    origin: str  # where the rows came from: "postgres" or "supabase"


class Source(Protocol):
    name: str

    async def fetch(self, table: str) -> Loaded: ...


class PostgresSource:
    name = "postgres"

    def __init__(self, pool: db.Pool) -> None:
        self._pool = pool

    async def fetch(self, table: str) -> Loaded:
        return Loaded(await db.fetch_list(self._pool, table), "postgres")


@dataclasses.dataclass(frozen=True)
class Shape:
    """What one Supabase request asks for: columns, and the keyset order column."""

    columns: tuple[str, ...]
    order: str

    @property
    def select(self) -> str:
        return ",".join(dict.fromkeys((*self.columns, self.order)))


def missing_column(message: str) -> str | None:
    """The column in PostgreSQL's "column domains.active does not exist"."""
    match = re.search(r'column "?(?:\w+\.)?(\w+)"? does not exist', message)
    return match[1] if match else None


def adapt(shape: Shape, table: str, missing: str) -> Shape | None:
    """The request to try once PostgREST said column `missing` does not exist;
    None if it is a column we cannot do without."""
    keys = ORDER_KEYS[table]
    if missing == shape.order and missing != keys[-1]:
        return Shape(shape.columns, keys[keys.index(missing) + 1])
    if missing in shape.columns and missing in db.OPTIONAL_COLUMNS:
        return Shape(tuple(c for c in shape.columns if c != missing), shape.order)
    return None


class SupabaseSource:
    """Reads through supabase-py (imported only here: it is heavy), paging past 1000 rows."""

    name = "supabase"

    def __init__(self, url: str, key: str, pool: db.Pool | None = None) -> None:
        self._url = url
        self._key = key
        self._pool = pool  # where private_email is looked for first
        self._client: Any = None
        self._shapes = {t: Shape(db.LIST_COLUMNS[t], ORDER_KEYS[t][0]) for t in ORDER_KEYS}

    async def fetch(self, table: str) -> Loaded:
        if table == PAUSE_TABLE and self._pool is not None:  # the CLI's switch, on every host
            return Loaded(await db.fetch_list(self._pool, table), "postgres")
        if table != "private_email" or self._pool is None:
            return Loaded(await self.read(table), "supabase")
        try:
            rows = await db.fetch_list(self._pool, table)
        except db.asyncpg.UndefinedTableError:
            rows = []
        if rows:
            return Loaded(rows, "postgres")
        try:
            return Loaded(await self.read(table), "supabase")
        except Exception as error:
            if getattr(error, "code", None) not in UNDEFINED_TABLE:
                raise
            return Loaded([], "postgres")  # neither has an address: PostgreSQL's empty table

    async def read(self, table: str) -> list[dict[str, Any]]:
        """All rows of `table`, adapting the request to the table's columns."""
        if self._client is None:
            from supabase import acreate_client

            self._client = await acreate_client(self._url, self._key)
        while True:
            shape = self._shapes[table]
            try:
                return await self._pages(table, shape)
            except Exception as error:
                if getattr(error, "code", None) != UNDEFINED_COLUMN:
                    raise
                adapted = adapt(shape, table, missing_column(getattr(error, "message", "")) or "")
                if adapted is None:
                    raise
                log.info(
                    "[lists] Supabase %s: %s; reading %s ordered by %s",
                    table,
                    getattr(error, "message", error),
                    adapted.select,
                    adapted.order,
                )
                self._shapes[table] = adapted

    async def _pages(self, table: str, shape: Shape) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        while True:
            request = self._client.table(table).select(shape.select).order(shape.order)
            if rows:
                request = request.gt(shape.order, rows[-1][shape.order])
            page = (await request.limit(SUPABASE_PAGE).execute()).data
            rows += page
            if len(page) < SUPABASE_PAGE:
                return rows


def make_source(settings: Settings, pool: db.Pool) -> Source:
    if settings.lists_source == "supabase":
        assert settings.supabase_url and settings.supabase_key
        return SupabaseSource(settings.supabase_url, settings.supabase_key, pool)
    return PostgresSource(pool)


class ListsState:
    """The current snapshot, and where each table was last loaded from."""

    def __init__(self, settings: Settings) -> None:
        self.current = Lists(
            whitelist_enabled=settings.use_domain_whitelist, bans_enabled=settings.use_bans
        )
        self.origins: dict[str, str] = {}  # table -> where it was last loaded from
        self.ready = asyncio.Event()  # set once every list the policy needs is loaded

    def get(self) -> Lists:
        return self.current


async def refresh_once(state: ListsState, source: Source, table: str) -> None:
    """Load one table from `source` and swap it into the snapshot.

    A failure raises and leaves the snapshot as it was (run_every counts it).
    """
    loaded = await source.fetch(table)
    rows = loaded.rows
    problems: list[str] = []
    first = table not in state.origins
    if table == "domains":
        domains, problems = build_domains(rows)
        state.current = dataclasses.replace(state.current, domains=domains)
        if not domains and state.current.whitelist_enabled and first:
            log.warning(
                "[lists] the domain whitelist is empty: every recipient gets 550. "
                "Add one with `.venv/bin/tempmail domains add example.com`, "
                "or set USE_DOMAIN_WHITELIST=false to accept every domain"
            )
    elif table == "bans":
        bans, problems = build_bans(rows)
        state.current = dataclasses.replace(state.current, bans=bans)
    elif table == "rules":
        rules, problems = build_rules(rows)
        state.current = dataclasses.replace(state.current, rules=rules)
    elif table == PAUSE_TABLE:
        paused = build_pause(rows)
        if paused != state.current.paused:
            log.warning("[lists] %s", f"paused: {paused}" if paused else "receiving again")
        state.current = dataclasses.replace(state.current, paused=paused)
    else:
        state.current = dataclasses.replace(state.current, private=build_private(rows))
    for problem in problems[:20]:
        log.warning("[lists] %s", problem)
    # The defence tables are optional: an empty one is not news at start-up.
    quiet = not rows and table in ("rules", PAUSE_TABLE)
    if state.origins.get(table) != loaded.origin and not quiet:
        where = (
            f" ({PRIVATE_ORDER})" if table == "private_email" and source.name == "supabase" else ""
        )
        log.info("[lists] %s loaded from %s: %d rows%s", table, loaded.origin, len(rows), where)
    state.origins[table] = loaded.origin
    if state.current.ready:
        state.ready.set()
    metrics.LIST_LOADED.labels(table).set(time.time())
