"""Retention and partition maintenance never hold readers or the writer up.

Found in review: dropping an expired partition that held private_email mail
ran DETACH (ACCESS EXCLUSIVE on `emails` and its DEFAULT partition), copied
the kept rows back and dropped the partition in one transaction, holding
those locks for the whole copy (a mailbox read waited 2 s for 300,000 rows);
and every new partition's ATTACH scanned the DEFAULT partition, where kept
mail piles up, under ACCESS EXCLUSIVE. lock_timeout bounds only the wait for
a lock, not how long it is held.

Each test adds up the time a mailbox read and an insert spend waiting for a
lock while retention runs on a real PostgreSQL (tests/probes.py): that wait
is the behaviour. It is read from pg_stat_activity, so a busy machine (which
slows every statement) does not count, only a lock held against them; the
slowest statements are printed beside it.
"""

from __future__ import annotations

import asyncio
import datetime
import threading
import time

import asyncpg

from app import (
    db,
    db_expiry,
    db_fences,
    db_retention_locks,
    retention,
    retention_partitions,
    retention_plan,
)

from .helpers import app_command, eventually, query
from .probes import probing

UTC = datetime.UTC
H = datetime.timedelta(hours=1)
# Seconds a read or an insert may wait for a lock while retention runs, on a
# quiet machine; on a busy one, the brief locks last longer (their holder is
# descheduled too): half a scan of the table, timed in the same test, where
# a lock held over that scan (the defect these tests catch) costs a whole one.
WORST = 0.25
VIPS = [f"vip{n}@example.com" for n in range(50)]
PRIVATE = frozenset(VIPS)


def install(url: str) -> None:
    result = app_command("init-db", DATABASE_URL=url)
    assert result.returncode == 0, result.stderr
    query(url, "INSERT INTO private_email (email) SELECT unnest($1::text[])", VIPS)
    query(url, "INSERT INTO retention_state (report) VALUES ('reported earlier')")


def old_partition(url: str, table: str = "emails") -> None:
    """An hour of mail two days old: expired with RETENTION_HOURS=24."""
    query(
        url,
        f"CREATE TABLE {table}_p_old PARTITION OF {table} FOR VALUES "
        "FROM (now() - interval '49 hours') TO (now() - interval '48 hours')",
    )


def add_mail(
    url: str, rows: int, age: str, private_every: int = 3, body: str = "body text"
) -> None:
    """`rows` emails rows received `age` ago; every `private_every`th for a VIP."""
    query(
        url,
        "INSERT INTO emails (mailbox_owner, subject, body, from_addr, received_at) "
        "SELECT CASE WHEN n % $2 = 0 THEN 'vip' || (n % 50) || '@example.com' "
        "ELSE 'user' || n || '@example.com' END, 'old', repeat($4, 20), 'a@sender.test', "
        "now() - $3::text::interval - n * interval '1 millisecond' "
        "FROM generate_series(1, $1) AS n",
        rows,
        private_every,
        age,
        body + " ",
    )
    query(url, "ANALYZE emails")


def vip_count(url: str) -> int:
    return int(query(url, "SELECT count(*) FROM emails WHERE mailbox_owner LIKE 'vip%'")[0][0])


def report(what: str, reader: object, inserter: object) -> tuple[float, float]:
    read, insert = reader.locked, inserter.locked  # type: ignore[attr-defined]
    print(
        f"{what}: slowest read {reader.worst * 1000:.0f} ms, slowest insert "  # type: ignore[attr-defined]
        f"{inserter.worst * 1000:.0f} ms; waiting for locks: reads {read * 1000:.0f} ms, "  # type: ignore[attr-defined]
        f"inserts {insert * 1000:.0f} ms"
    )
    return read, insert


def scan_seconds(url: str, table: str) -> float:
    """How long one full scan of `table` takes now (the baseline of WORST)."""
    started = time.perf_counter()
    # What an ATTACH's check of it does: a condition on every row (no index:
    # the expression hides the column), nothing detoasted.
    query(url, f"SELECT count(*) FROM ONLY {table} WHERE received_at + interval '0 s' >= now()")
    return time.perf_counter() - started


def assert_no_lock_waits(doing: str, read: float, insert: float, scan: float) -> None:
    worst = max(WORST, scan / 2)
    assert read < worst and insert < worst, (
        f"while {doing} a mailbox read waited {read * 1000:.0f} ms "
        f"for locks and an insert {insert * 1000:.0f} ms (a scan took {scan * 1000:.0f} ms)"
    )


def emails_partitions(url: str) -> set[str]:
    """The names of the partitions attached to `emails`."""
    return {
        r[0]
        for r in query(
            url,
            "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'emails'::regclass",
        )
    }


def test_dropping_a_partition_with_private_mail_blocks_nobody(database_url):
    """The reviewer's case: one expired hour of 300,000 rows, a third of them for
    private addresses, dropped by `python -m app retention`."""
    install(database_url)
    old_partition(database_url)
    add_mail(database_url, 300_000, "48 hours 30 minutes")
    scan = scan_seconds(database_url, "emails_p_old")
    with probing(database_url) as (reader, inserter):
        run = app_command("retention", DATABASE_URL=database_url, RETENTION_HOURS="24")
    assert run.returncode == 0, run.stderr
    print(run.stdout)
    read, insert = report("dropping 300,000 rows, 100,000 kept", reader, inserter)
    assert "deleted 200000 emails rows" in run.stdout
    assert vip_count(database_url) == 100_000
    assert_no_lock_waits("retention dropped one partition", read, insert, scan)


class Watcher(threading.Thread):
    """The private mail as a website sees it, over and over: (seconds, rows
    received before `since`, rows received from `since` on), one read each."""

    def __init__(self, url: str, since: datetime.datetime) -> None:
        super().__init__(daemon=True)
        self.url, self.since = url, since
        self.seen: list[tuple[float, int, int]] = []
        self.running = True

    def run(self) -> None:
        async def go() -> None:
            conn = await asyncpg.connect(self.url)
            try:
                while self.running:
                    row = await conn.fetchrow(
                        "SELECT count(*) FILTER (WHERE received_at < $1), "
                        "count(*) FILTER (WHERE received_at >= $1) "
                        "FROM emails WHERE mailbox_owner = ANY($2::text[])",
                        self.since,
                        VIPS,
                    )
                    assert row is not None
                    self.seen.append((time.monotonic(), row[0], row[1]))
            finally:
                await conn.close()

        asyncio.run(go())

    def stop(self) -> None:
        self.running = False
        self.join()


def test_private_mail_stays_readable_while_its_partition_is_dropped(database_url):
    """Kept mail is never lost. Older kept mail (in DEFAULT already) never
    leaves a reader's sight; the private rows of the partition being dropped
    are out of sight only between its DETACH and the commit of their copy:
    all of them at once, in one stretch (the window docs/decisions.md states)."""
    install(database_url)
    add_mail(database_url, 3_000, "10 days", private_every=1)  # kept by earlier runs
    old_partition(database_url)
    add_mail(database_url, 60_000, "48 hours 30 minutes")
    since = query(database_url, "SELECT now() - interval '49 hours'")[0][0]
    watcher = Watcher(database_url, since)
    watcher.start()
    try:
        eventually(lambda: len(watcher.seen) > 20)
        run = app_command("retention", DATABASE_URL=database_url, RETENTION_HOURS="24")
        seen_before_stop = len(watcher.seen)
        eventually(lambda: len(watcher.seen) > seen_before_stop + 5)
    finally:
        watcher.stop()
    assert run.returncode == 0, run.stderr
    assert "deleted 40000 emails rows" in run.stdout
    assert {older for _, older, _ in watcher.seen} == {3_000}
    assert {recent for _, _, recent in watcher.seen} <= {20_000, 0}
    states = [recent for _, _, recent in watcher.seen]
    changes = [b for a, b in zip(states, states[1:], strict=False) if a != b]
    assert states[-1] == 20_000 and changes in ([], [20_000], [0, 20_000]), changes
    out = [t for t, _, recent in watcher.seen if recent == 0]
    window = (max(out) - min(out)) * 1000 if out else 0.0
    print(
        f"{len(watcher.seen)} reads; the dropped hour's 20,000 private rows out of sight "
        f"for {window:.0f} ms ({len(out)} reads)"
    )
    assert vip_count(database_url) == 23_000


async def maintain(url: str, *moments: datetime.datetime) -> None:
    pool = await db.create_pool(url)
    try:
        for now in moments:
            await retention.maintain(pool, 24, None, now=now)
    finally:
        await pool.close()


def make_partitions_ahead(url: str, slot: datetime.datetime) -> None:
    """The previous release's hourly partitions, made from an hour before `slot`
    to six hours after it, for every table."""
    for table in retention_plan.TABLES:
        for hour in range(-1, 7):
            lower = slot + hour * H
            query(
                url,
                f"CREATE TABLE {retention_plan.partition_name(table, lower)} PARTITION OF {table} "
                f"FOR VALUES FROM ({db_retention_locks.quote_time(lower)}) "
                f"TO ({db_retention_locks.quote_time(lower + H)})",
            )


async def raise_fence(url: str) -> datetime.datetime:
    """What expiring a partition above the fence does first; the new fence."""
    pool = await db.create_pool(url)
    try:
        existing = await retention_partitions.shape(pool, "emails")
        assert existing is not None
        future = retention_plan.future_of(existing)
        assert future is not None and future.lower is not None
        assert await retention_partitions.make_room(pool, existing, future.lower)
        return future.lower
    finally:
        await pool.close()


def test_new_partitions_attach_without_scanning_kept_mail(database_url):
    """A DEFAULT partition holding much kept private mail, as the previous
    release left it (ranges made ahead, no future partition). The first run
    fences it (VALIDATE: a scan nobody waits for) and attaches the future
    partition; it and the next run make new partitions with catalog work
    only; moving the fence up (as expiry does about once a retention period)
    scans without holding anyone up either. Before, each ATTACH scanned the
    DEFAULT partition under ACCESS EXCLUSIVE (0.3 to 0.8 s here)."""
    install(database_url)
    now = datetime.datetime.now(UTC)
    slot = retention_plan.floor_to(now, H)
    make_partitions_ahead(database_url, slot)
    # 800,000 rows of 1.5 KB (below TOAST's threshold: all in the table's own
    # pages), unlogged only so that they load in seconds: locks are the same.
    query(database_url, "ALTER TABLE emails_default SET UNLOGGED")
    add_mail(database_url, 800_000, "40 days", 1, "kept private mail body, " * 3)
    scan = scan_seconds(database_url, "emails_default")

    with probing(database_url) as (reader, inserter):
        asyncio.run(maintain(database_url, now + 3 * H, now + 4 * H))
    read, insert = report("making partitions beside 800,000 kept rows", reader, inserter)
    assert_no_lock_waits("partitions were made", read, insert, scan)

    with probing(database_url) as (reader, inserter):
        top = asyncio.run(raise_fence(database_url))
    read, insert = report("moving the fence up over them", reader, inserter)
    assert_no_lock_waits("the fence moved", read, insert, scan)
    assert vip_count(database_url) == 800_000
    names = emails_partitions(database_url)
    assert retention_plan.partition_name("emails", slot + 9 * H) in names
    assert "emails_future" in names
    fences = query(
        database_url,
        "SELECT conname, convalidated FROM pg_constraint "
        "WHERE conrelid = 'emails_default'::regclass AND contype = 'c'",
    )
    assert [tuple(r) for r in fences] == [(db_fences.fence_name(top), True)]


def test_a_drop_stopped_after_its_detach_is_finished_by_the_next_run(database_url):
    """A run killed between the DETACH and the copy leaves the partition
    detached (and marked): the next run puts its kept rows back."""
    install(database_url)
    for table in retention_plan.TABLES:
        old_partition(database_url, table)
    query(
        database_url,
        "WITH raw AS (INSERT INTO raw_messages (id, raw, received_at) SELECT gen_random_uuid(), "
        "'x', now() - interval '48 hours 30 minutes' FROM generate_series(1, 30) "
        "RETURNING id, received_at) INSERT INTO emails (mailbox_owner, subject, body, "
        "from_addr, raw_id, received_at) SELECT CASE WHEN row_number() OVER () <= 3 "
        "THEN 'vip1@example.com' ELSE 'o@example.com' END, 's', '', '', id, received_at FROM raw",
    )
    cutoff = datetime.datetime.now(UTC) - 24 * H

    async def stopped_then_run() -> dict[str, retention_plan.Totals]:
        pool = await db.create_pool(database_url)
        try:
            assert await db_expiry.detach_expiring(pool, "emails", "emails_p_old")
            # The run stops here: the kept rows are out of sight until the next one.
            assert await pool.fetchval("SELECT count(*) FROM emails WHERE raw_id IS NOT NULL") == 0
            return await retention.expire(pool, cutoff, PRIVATE, include_existing=False)
        finally:
            await pool.close()

    done = asyncio.run(stopped_then_run())
    assert (done["emails"].expired, done["emails"].kept, done["emails"].partitions) == (27, 3, 1)
    assert (done["raw_messages"].expired, done["raw_messages"].kept) == (27, 3)
    kept = query(
        database_url,
        "SELECT count(*) FROM emails_default e JOIN raw_messages r ON r.id = e.raw_id "
        "WHERE e.mailbox_owner = 'vip1@example.com'",
    )
    assert kept == [(3,)]
    assert query(database_url, "SELECT to_regclass('emails_p_old') IS NULL") == [(True,)]


def test_mail_past_the_made_partitions_is_never_refused(database_url):
    """The fence refuses DEFAULT rows from its bound on; mail past the
    partitions made ahead (made late, or a clock ahead) goes to the future
    partition instead, and the next run moves it into the new ranges."""
    install(database_url)
    now = datetime.datetime.now(UTC)
    asyncio.run(maintain(database_url, now))
    query(
        database_url,
        "INSERT INTO emails (mailbox_owner, subject, body, from_addr, received_at) "
        "VALUES ('late@example.com', 'late', '', '', $1), "
        "('ahead@example.com', 'ahead', '', '', $2)",
        now + 20 * H,
        now + 400 * 24 * H,
    )
    in_future = query(database_url, "SELECT subject FROM emails_future ORDER BY 1")
    assert in_future == [("ahead",), ("late",)]
    asyncio.run(maintain(database_url, now + 30 * H))
    assert query(database_url, "SELECT subject FROM emails_future") == [("ahead",)]
    where = query(
        database_url, "SELECT tableoid::regclass::text FROM emails WHERE subject = 'late'"
    )
    assert where == [
        (retention_plan.partition_name("emails", retention_plan.floor_to(now, H) + 7 * H),)
    ]


def test_ranges_that_ran_out_resume_above_the_mail_arriving(database_url):
    """Partitions not made for two days (the service was down), beside a
    DEFAULT partition too big to scan under a lock (over SMALL_DEFAULT): no
    catching up by ATTACH; the future partition starts two hours from now,
    and the fence below it lets in the mail arriving until then."""
    install(database_url)
    old_partition(database_url)  # the last range made
    add_mail(database_url, 15_000, "10 days", 1, "kept private mail body, " * 3)
    assert query(database_url, "SELECT pg_relation_size('emails_default')")[0][0] > (
        retention_partitions.SMALL_DEFAULT
    )
    now = datetime.datetime.now(UTC)
    asyncio.run(maintain(database_url, now))
    query(
        database_url,
        "INSERT INTO emails (mailbox_owner, subject, body, from_addr) "
        "VALUES ('new@example.com', 'arriving', '', '')",
    )
    where = query(
        database_url, "SELECT tableoid::regclass::text FROM emails WHERE subject = $1", "arriving"
    )
    assert where == [("emails_default",)]
    made = emails_partitions(database_url)
    start = retention_plan.floor_to(now, H) + 2 * H  # ranges resume here; the hours before: DEFAULT
    assert retention_plan.partition_name("emails", start) in made
    assert retention_plan.partition_name("emails", start - H) not in made
    assert "emails_future" in made
