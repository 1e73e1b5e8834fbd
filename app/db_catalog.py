"""What the catalog says about the mail and list tables, for `check` and `init-db`.

The shape of each mail table (partitioned, or the operator's plain table
kept as it was), the rows kept as stored before the upgrade, and what the
operator built on `emails` that an upgrade must keep: row-level security
and its policies, privileges, triggers, views, publications, indexes.
"""

from __future__ import annotations

from . import db

Line = tuple[bool, str]  # (ok, text)


def listed(values: list[str]) -> str:
    return ", ".join(values) if values else "none"


async def report(conn: db.Connection) -> list[Line]:
    """One (ok, text) line per fact; not ok only for what needs the operator."""
    lines: list[Line] = []
    for table in ("emails", "raw_messages"):
        kind = await db.relkind(conn, table)
        if kind is None:
            lines.append((False, f"{table}: missing; run `python -m app init-db`"))
        elif kind == "p":
            parts = await conn.fetchval(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = to_regclass($1)", table
            )
            lines.append(
                (
                    True,
                    f"{table}: partitioned by received_at (partitions: {parts}; "
                    "retention drops whole expired ones)",
                )
            )
        else:
            lines.append(
                (
                    True,
                    f"{table}: plain table, kept as it was (retention deletes expired "
                    "rows in small batches)",
                )
            )
    if await db.relkind(conn, "emails") in ("r", "p"):
        lines += await emails_report(conn)
    if await db.relkind(conn, "domains") and "active" not in await db.columns(conn, "domains"):
        lines.append((True, "domains: no `active` column (Cybertemp's table): every row is active"))
    lines.append(await retention_line(conn))
    return lines


# What an operator may have built on `emails`, by name: (label, query).
NAMED_OVER_EMAILS = (
    (
        "triggers",
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'emails'::regclass "
        "AND NOT tgisinternal ORDER BY 1",
    ),
    (
        "views over it",
        "SELECT DISTINCT r.ev_class::regclass::text FROM pg_depend d "
        "JOIN pg_rewrite r ON r.oid = d.objid WHERE d.classid = 'pg_rewrite'::regclass "
        "AND d.refobjid = 'emails'::regclass AND r.ev_class <> 'emails'::regclass ORDER BY 1",
    ),
    (
        "in publications",
        "SELECT DISTINCT pubname FROM pg_publication_tables "
        "WHERE schemaname = current_schema() AND (tablename = 'emails' OR tablename IN "
        "(SELECT relname FROM pg_class WHERE oid IN (SELECT inhrelid FROM pg_inherits "
        "WHERE inhparent = 'emails'::regclass))) ORDER BY 1",
    ),
)


async def emails_report(conn: db.Connection) -> list[Line]:
    """What `emails` holds from before the upgrade and what the operator built on it."""
    lines: list[Line] = [
        (
            True,
            f"emails: {await rows_before_upgrade(conn)} rows stored before the upgrade, kept by "
            "retention (`python -m app retention --include-existing --dry-run` shows what it "
            "would delete)",
        ),
        await security_line(conn),
        await grants_line(conn),
    ]
    for label, sql in NAMED_OVER_EMAILS:
        names = [r[0] for r in await conn.fetch(sql)]
        lines.append((True, f"emails: {label}: {listed(names)}"))
    return lines + await index_lines(conn)


async def rows_before_upgrade(conn: db.Connection) -> int:
    """Rows without received_at: in a plain table, or in a partition from MINVALUE
    (made by our old migration 002 of the rows it found)."""
    if await db.relkind(conn, "emails") == "r":
        return int(await conn.fetchval("SELECT count(*) FROM emails WHERE received_at IS NULL"))
    existing = 0
    for (name,) in await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'emails'::regclass "
        "AND pg_get_expr(c.relpartbound, c.oid) LIKE '%FROM (MINVALUE)%'"
    ):
        existing += await conn.fetchval(f"SELECT count(*) FROM {db.quote_ident(name)}")
    return existing


async def security_line(conn: db.Connection) -> Line:
    """Row-level security on `emails` and its policies."""
    security = await conn.fetchrow(
        "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'emails'::regclass"
    )
    assert security is not None
    policies = [
        r[0]
        for r in await conn.fetch(
            "SELECT polname FROM pg_policy WHERE polrelid = 'emails'::regclass ORDER BY 1"
        )
    ]
    state = "on" + (" (forced)" if security[1] else "") if security[0] else "off"
    return (True, f"emails: row-level security {state}; policies: {listed(policies)}")


async def grants_line(conn: db.Connection) -> Line:
    """The privileges on `emails` granted to others than its owner."""
    grants = await conn.fetch(
        "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END, "
        "string_agg(a.privilege_type, ',' ORDER BY a.privilege_type) "
        "FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = 'emails'::regclass "
        "AND a.grantee <> c.relowner GROUP BY 1 ORDER BY 1"
    )
    return (
        True,
        "emails: privileges granted: " + ("; ".join(f"{r[0]} {r[1]}" for r in grants) or "none"),
    )


async def index_lines(conn: db.Connection) -> list[Line]:
    """The indexes on `emails`, and one not-ok line per index not valid yet."""
    indexes = await conn.fetch(
        "SELECT indexrelid::regclass::text, indisvalid FROM pg_index "
        "WHERE indrelid = 'emails'::regclass ORDER BY 1"
    )
    lines: list[Line] = [(True, "emails: indexes: " + listed([r[0] for r in indexes]))]
    for name, valid in indexes:
        if not valid:
            lines.append(
                (
                    False,
                    f"emails: index {name} is not valid yet (being built, or an "
                    "interrupted build: `python -m app init-db` rebuilds it)",
                )
            )
    return lines


async def retention_line(conn: db.Connection) -> Line:
    if await db.relkind(conn, "retention_state") is None:
        return (True, "retention: not set up yet (`python -m app init-db`)")
    first = await conn.fetchval("SELECT first_run_at FROM retention_state")
    if first is None:
        return (
            True,
            "retention: first run pending: it logs what it would delete and deletes "
            "nothing; later runs delete",
        )
    return (
        True,
        f"retention: deleting since {first:%Y-%m-%d %H:%M} UTC (the first run only reported)",
    )
