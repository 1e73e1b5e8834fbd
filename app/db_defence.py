"""The SQL of the inbound defence's tables: `rules` and `receive_pause`
(migration 020). Every change is announced on the lists channel, so running
services apply it at once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from . import db
from .pause import TABLE as PAUSE_TABLE
from .rules import COLUMNS

EDITABLE = tuple(c for c in COLUMNS if c not in ("id", "active"))


async def add_rule(conn: asyncpg.Connection, values: Mapping[str, Any]) -> int:
    """Insert a rule (already checked by rules.compile_rule); its id."""
    names = [name for name in EDITABLE if values.get(name) is not None]
    placeholders = ", ".join(
        f"${n}::cidr" if name == "client" else f"${n}" for n, name in enumerate(names, 1)
    )
    rule_id = await conn.fetchval(
        f"INSERT INTO rules ({', '.join(names)}) VALUES ({placeholders}) RETURNING id",
        *(str(values[n]) if n == "client" else values[n] for n in names),
    )
    await db.announce_list_change(conn, "rules")
    return int(rule_id)


async def remove_rule(conn: asyncpg.Connection, rule_id: int) -> bool:
    removed = await conn.execute("DELETE FROM rules WHERE id = $1", rule_id) != "DELETE 0"
    if removed:
        await db.announce_list_change(conn, "rules")
    return removed


async def list_rules(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(f"SELECT {', '.join(COLUMNS)} FROM rules ORDER BY priority, id")
    return [dict(r) for r in rows]


async def pause(conn: asyncpg.Connection, reason: str) -> None:
    await conn.execute(
        f"INSERT INTO {PAUSE_TABLE} (reason) VALUES ($1) "
        "ON CONFLICT (singleton) DO UPDATE SET reason = $1, paused_at = now()",
        reason,
    )
    await db.announce_list_change(conn, PAUSE_TABLE)


async def resume(conn: asyncpg.Connection) -> bool:
    resumed = await conn.execute(f"DELETE FROM {PAUSE_TABLE}") != "DELETE 0"
    await db.announce_list_change(conn, PAUSE_TABLE)
    return resumed
