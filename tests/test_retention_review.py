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

import asyncio
import datetime
import itertools

import asyncpg

from app import (
    db,
    db_expiry,
    db_fences,
    db_partitions,
    db_retention_locks,
    db_schema,
    retention,
    retention_partitions,
    retention_plan,
)

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
    return {name for name, _ in await db_partitions.partitions(pool, table) or []}


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
        assert retention_plan.partition_name("emails", retention_plan.floor_to(now, H)) in names
        assert retention_plan.future_name("emails") in names
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
        assert retention_plan.partition_name("emails", retention_plan.floor_to(now, H)) not in (
            await partition_names(pool)
        )
    finally:
        await pool.close()


def insert_after_first_move(monkeypatch, url: str, source: str, received: datetime.datetime):
    """Mail arriving while partitions are made: once the first move of rows out
    of `source` is done, another session commits a row received at `received`
    (into `source`: its new partition is not attached yet). Returns the list
    of subjects so inserted."""
    moved = db_partitions.move_rows
    inserted: list[str] = []

    async def move_then_insert(conn, from_, target, lower, upper):
        count = await moved(conn, from_, target, lower, upper)
        if from_ == source and not inserted and lower <= received < (upper or received + H):
            other = await asyncpg.connect(url)
            try:
                await other.execute(
                    "INSERT INTO emails (mailbox_owner, subject, body, from_addr, received_at) "
                    "VALUES ('o@example.com', 'meanwhile', '', '', $1)",
                    received,
                )
            finally:
                await other.close()
            inserted.append("meanwhile")
        return count

    monkeypatch.setattr(db_partitions, "move_rows", move_then_insert)
    return inserted


async def where(pool: db.Pool, subject: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT tableoid::regclass::text FROM emails WHERE subject = $1", subject
    )
    return [r[0] for r in rows]


async def test_mail_arriving_while_the_future_partition_is_split(database_url, monkeypatch):
    """Partitions made late (a stall): the mail arriving lands in the future
    partition, and a row committed there after the rows were moved made its
    new CHECK fail, at every run under load. It moves under the lock now."""
    pool = await installed(database_url)
    try:
        now = datetime.datetime.now(UTC)
        await retention.maintain(pool, 24, PRIVATE, now=now)
        later = now + 30 * H  # the ranges made end at about now + 7 hours
        await add_mail(pool, "o@example.com", "stalled", later - 10 * H)
        inserted = insert_after_first_move(monkeypatch, database_url, "emails_future", later)
        await retention.maintain(pool, 24, PRIVATE, now=later)
        assert inserted == ["meanwhile"]
        current = retention_plan.partition_name("emails", retention_plan.floor_to(later, H))
        assert await where(pool, "meanwhile") == [current]
        assert (await where(pool, "stalled"))[0].startswith("emails_p")
        existing = await retention_partitions.shape(pool, "emails")
        future = retention_plan.future_of(existing or [])
        assert future is not None and future.lower is not None and future.lower > later
    finally:
        await pool.close()


async def test_mail_arriving_while_the_first_ranges_are_made(database_url, monkeypatch):
    """A fresh table: its first ranges take their rows from DEFAULT, and a row
    committed there after the move made ATTACH fail."""
    pool = await installed(database_url)
    try:
        now = datetime.datetime.now(UTC)
        await add_mail(pool, "o@example.com", "before", now)
        inserted = insert_after_first_move(monkeypatch, database_url, "emails_default", now)
        await retention.maintain(pool, 24, PRIVATE, now=now)
        assert inserted == ["meanwhile"]
        current = retention_plan.partition_name("emails", retention_plan.floor_to(now, H))
        assert await where(pool, "before") == [current]
        assert await where(pool, "meanwhile") == [current]
    finally:
        await pool.close()


async def test_catching_up_while_mail_arrives(database_url, caplog):
    """The reviewer's case: partitions made late (the last run 30 hours ago),
    mail arriving all along. Each run failed on the future partition's new
    CHECK, so they were never made, and expiry never ran."""
    pool = await installed(database_url)
    try:
        now = datetime.datetime.now(UTC)
        await retention.maintain(pool, 24, PRIVATE, now=now - 30 * H)
        stop, flowing = asyncio.Event(), asyncio.Event()

        async def arriving() -> None:
            conn = await asyncpg.connect(database_url)
            try:
                for inserted in itertools.count(1):
                    if stop.is_set():
                        break
                    await conn.execute(
                        "INSERT INTO emails (mailbox_owner, subject, body, from_addr) "
                        "VALUES ('o@example.com', 'arriving', '', '')"
                    )
                    if inserted == 50:
                        flowing.set()
            finally:
                await conn.close()

        mail = asyncio.create_task(arriving())
        try:
            await asyncio.wait_for(flowing.wait(), 10)
            gone = await retention.maintain(pool, 24, PRIVATE)
        finally:
            stop.set()
            await mail
        assert "failed" not in caplog.text
        current = retention_plan.partition_name("emails", retention_plan.floor_to(now, H))
        assert set(await where(pool, "arriving")) <= {
            current,
            retention_plan.partition_name("emails", retention_plan.floor_to(now, H) + H),
        }
        assert gone == {"emails": 0, "raw_messages": 0}
        assert retention_plan.partition_name(
            "emails", retention_plan.floor_to(now - 30 * H, H)
        ) not in (await partition_names(pool))
    finally:
        await pool.close()


async def test_a_failure_making_partitions_does_not_stop_expiry(database_url, monkeypatch, caplog):
    """Making partitions failed (any error): the run logged it and went on
    to expire, instead of raising before expiry (no expiry ever, under load)."""
    pool = await installed(database_url)
    try:
        now = datetime.datetime.now(UTC)
        await retention.maintain(pool, 24, PRIVATE, now=now)
        await add_mail(pool, "o@example.com", "old", now)

        async def failing(*args, **kwargs):
            raise asyncpg.CheckViolationError("simulated")

        monkeypatch.setattr(db_partitions, "split_future", failing)
        later = now + 30 * H
        gone = await retention.maintain(pool, 24, PRIVATE, now=later)
        assert gone["emails"] == 1
        assert "making partitions failed" in caplog.text
    finally:
        await pool.close()


LOG_BY_ID = """
CREATE TABLE email_log (id uuid PRIMARY KEY);
CREATE FUNCTION log_email() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO email_log VALUES (NEW.id);
    RETURN NULL;
END $$;
CREATE TRIGGER email_logged AFTER INSERT ON emails FOR EACH ROW EXECUTE FUNCTION log_email();
"""


async def test_a_failing_copy_back_attaches_the_partition_again(database_url, caplog, monkeypatch):
    """An operator's AFTER INSERT trigger keyed by id refuses the copy of a
    kept row (its id is logged already). The partition was left detached, its
    private mail out of sight for good; now it is attached again (with a row
    of its hour replayed into DEFAULT meanwhile), one line says why, and once
    the trigger is fixed the next run drops it."""
    pool = await installed(database_url, LOG_BY_ID)
    try:
        now = datetime.datetime.now(UTC)
        await retention.maintain(pool, 24, PRIVATE, now=now)
        await add_mail(pool, "p@example.com", "private", now)
        await add_mail(pool, "o@example.com", "other", now)
        hour = retention_plan.partition_name("emails", retention_plan.floor_to(now, H))
        finish = db_expiry.finish_expiring

        async def replayed_meanwhile(pool_, table, name, private):
            if name == hour:
                await add_mail(pool, "o@example.com", "replayed", now)
            return await finish(pool_, table, name, private)

        monkeypatch.setattr(db_expiry, "finish_expiring", replayed_meanwhile)
        later = now + 30 * H
        gone = await retention.maintain(pool, 24, PRIVATE, now=later)
        monkeypatch.undo()
        assert gone["emails"] == 0
        assert await where(pool, "private") == [hour]
        assert await where(pool, "other") == [hour]
        assert await where(pool, "replayed") == [hour]
        assert await db_expiry.expiring(pool, "emails") == []
        failures = [r.message for r in caplog.records if "could not copy" in r.message]
        assert len(failures) == 1 and "attached again" in failures[0], failures
        await pool.execute(
            "CREATE OR REPLACE FUNCTION log_email() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN INSERT INTO email_log VALUES (NEW.id) ON CONFLICT DO NOTHING; RETURN NULL; "
            "END $$"
        )
        gone = await retention.maintain(pool, 24, PRIVATE, now=later + H)
        assert gone["emails"] == 2
        assert await where(pool, "private") == ["emails_default"]
        assert hour not in await partition_names(pool)
    finally:
        await pool.close()


async def test_a_fence_left_not_valid_by_a_stopped_run_is_dropped(database_url, caplog):
    """A run stopped between adding a fence (NOT VALID: it refuses rows from
    then on) and validating it left it behind for good unless a later run
    happened to move the fence. The next run drops it, unless another run
    is under way (it may be that run's fence, about to be validated)."""
    pool = await installed(database_url)
    try:
        now = datetime.datetime.now(UTC)
        await retention.maintain(pool, 24, None, now=now)
        future = retention_plan.future_of(await retention_partitions.shape(pool, "emails") or [])
        assert future is not None and future.lower is not None
        stopped = await db_fences.add_fence(pool, "emails_default", future.lower - H)
        assert [f.name for f in await db_fences.fences(pool, "emails_default")] == [
            stopped,
            db_fences.fence_name(future.lower),
        ]
        other = await asyncpg.connect(database_url)
        try:
            await other.execute("SELECT pg_advisory_lock($1)", db_retention_locks.RUN_LOCK)
            await retention.maintain(pool, 24, None, now=now)  # another run is under way
            assert stopped in [f.name for f in await db_fences.fences(pool, "emails_default")]
        finally:
            await other.close()
        await retention.maintain(pool, 24, None, now=now)
        left = await db_fences.fences(pool, "emails_default")
        assert [(f.name, f.valid) for f in left] == [(db_fences.fence_name(future.lower), True)]
        assert f"dropped {stopped}" in caplog.text
    finally:
        await pool.close()
