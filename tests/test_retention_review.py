"""Retention review: an operator's schema changes and concurrent inserts.

Found in review: partitions made with `LIKE emails` lacked the operator's
generated columns, so none could be attached, and copies named generated
columns; rows inserted while the future partition was split made its CHECK
fail, every run, under load, and the failure skipped expiry; a copy-back
that failed left the detached partition's private mail out of sight for
good; a NOT VALID fence left by a stopped run refused mail. Each test runs
against a real PostgreSQL.
"""

from __future__ import annotations

import datetime

import asyncpg

from app import db, db_expiry, db_schema, retention

UTC = datetime.UTC
H = datetime.timedelta(hours=1)
PRIVATE = frozenset({"p@example.com"})


async def installed(url: str, *statements: str) -> db.Pool:
    """The schema, past its first (report-only) run, then `statements`; a pool on it."""
    conn = await asyncpg.connect(url)
    try:
        await db_schema.install_schema(conn)
        await conn.execute("INSERT INTO retention_state (report) VALUES ('reported earlier')")
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()
    return await db.create_pool(url)


async def add_mail(pool: db.Pool, owner: str, subject: str, received: datetime.datetime) -> None:
    await pool.execute(
        "INSERT INTO emails (mailbox_owner, subject, body, from_addr, received_at) "
        "VALUES ($1, $2, '', '', $3)",
        owner,
        subject,
        received,
    )


async def partition_names(pool: db.Pool, table: str = "emails") -> set[str]:
    return {name for name, _ in await db_expiry.partitions(pool, table) or []}


GENERATED = (
    "ALTER TABLE emails ADD COLUMN subject_length int GENERATED ALWAYS AS (length(subject)) STORED"
)


async def test_an_operators_generated_column_does_not_stop_partitions_or_expiry(database_url):
    """A STORED generated column on emails: ranges are made (plain, future,
    split off it with rows moved), and an expired one is dropped with its
    private mail copied back, the generated value computed again."""
    pool = await installed(database_url, GENERATED)
    try:
        now = datetime.datetime.now(UTC)
        await add_mail(pool, "p@example.com", "kept", now)  # in DEFAULT: moved by the first run
        await retention.maintain(pool, 24, PRIVATE, now=now)
        names = await partition_names(pool)
        assert retention.partition_name("emails", retention.floor_to(now, H)) in names
        assert retention.future_name("emails") in names
        await add_mail(pool, "o@example.com", "late", now + 20 * H)  # in the future partition
        later = now + 30 * H
        await retention.maintain(pool, 24, PRIVATE, now=later)
        rows = await pool.fetch(
            "SELECT subject, subject_length, tableoid::regclass::text AS part FROM emails "
            "ORDER BY subject"
        )
        assert [(r["subject"], r["subject_length"]) for r in rows] == [("kept", 4), ("late", 4)]
        assert rows[0]["part"] == "emails_default"  # its partition expired: copied back
        assert rows[1]["part"].startswith("emails_p")  # moved out of the future partition
        assert retention.partition_name("emails", retention.floor_to(now, H)) not in (
            await partition_names(pool)
        )
    finally:
        await pool.close()
