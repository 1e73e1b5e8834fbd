"""Retention: partition planning (retention_plan, pure) and maintenance on a real PostgreSQL."""

from __future__ import annotations

import datetime

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app import db, db_partitions, db_schema, retention, retention_plan
from app.retention_plan import Partition, Step, expired, parse_bound, partition_width, plan, steps

UTC = datetime.UTC
H = datetime.timedelta(hours=1)
NOW = datetime.datetime(2026, 11, 23, 14, 25, tzinfo=UTC)


def test_partition_width_follows_retention():
    assert partition_width(0) == 24 * H  # kept forever: one a day
    assert partition_width(1) == H
    assert partition_width(24) == H
    assert partition_width(72) == 3 * H
    assert partition_width(24 * 30) == 24 * H


def test_parse_bound_forms():
    p = parse_bound(
        "emails_p20261123_14",
        "FOR VALUES FROM ('2026-11-23 14:00:00+00') TO ('2026-11-23 15:00:00+00')",
    )
    assert (p.lower, p.upper) == (NOW.replace(minute=0), NOW.replace(minute=0) + H)
    legacy = parse_bound(
        "emails_legacy", "FOR VALUES FROM (MINVALUE) TO ('2026-11-20 03:00:00+00')"
    )
    assert legacy.lower is None and legacy.upper == datetime.datetime(2026, 11, 20, 3, tzinfo=UTC)
    assert parse_bound("emails_default", "DEFAULT").is_default
    with pytest.raises(ValueError):
        parse_bound("odd", "FOR VALUES IN (1)")


def test_plan_starts_at_the_current_slot_and_covers_ahead():
    ranges = plan([], NOW, H)
    assert ranges[0] == (NOW.replace(minute=0), NOW.replace(minute=0) + H)
    assert ranges[-1][1] >= NOW + 6 * H
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))


def test_plan_continues_after_existing_and_realigns_after_a_width_change():
    odd_end = datetime.datetime(2026, 11, 23, 15, tzinfo=UTC)
    ranges = plan([Partition("x", None, odd_end)], NOW, 6 * H)
    assert ranges[0] == (odd_end, datetime.datetime(2026, 11, 23, 18, tzinfo=UTC))
    assert ranges[1][1] - ranges[1][0] == 6 * H
    far = plan([Partition("x", None, NOW + 30 * H)], NOW, H)
    assert far == []  # already covered
    assert plan([Partition("x", NOW, None)], NOW, H) == []  # a MAXVALUE partition


def test_plan_splits_the_future_partition_and_catches_up_after_a_stall():
    current = NOW.replace(minute=0)
    ahead = Partition("emails_future", current + 7 * H, None, is_future=True)
    assert plan([ahead], NOW, H) == []  # made up to now + 6 hours already
    future = Partition("emails_future", current + 2 * H, None, is_future=True)
    ranges = plan([Partition("emails_default", None, None, True), future], NOW, H)
    assert ranges[0] == (current + 2 * H, current + 3 * H)
    assert ranges[-1][1] >= NOW + 6 * H
    # Partitions made late (a stall of two days): the mail that arrived meanwhile is
    # in the future partition; one range takes all of it, then hourly ones.
    stalled = Partition("emails_future", current - 48 * H, None, is_future=True)
    ranges = plan([stalled], NOW, H)
    assert ranges[0] == (current - 48 * H, current)
    assert ranges[1] == (current, current + H)
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    # A MAXVALUE partition that is not ours: nothing to make.
    assert plan([Partition("emails_rest", current, None)], NOW, H) == []


@given(
    st.integers(min_value=0, max_value=10**6).map(lambda m: NOW + datetime.timedelta(minutes=m)),
    st.sampled_from(retention_plan.WIDTHS_HOURS).map(lambda w: w * H),
)
def test_plan_ranges_are_contiguous_aligned_and_cover_now(now, width):
    ranges = plan([], now, width)
    assert ranges[0][0] <= now < ranges[0][1]
    for lower, upper in ranges:
        assert upper == retention_plan.floor_to(lower, width) + width
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))


def test_expired_needs_the_whole_range_past_the_cutoff():
    parts = [
        Partition("legacy", None, NOW - 2 * H),
        Partition("boundary", NOW - 2 * H, NOW),
        Partition("default", None, None, is_default=True),
    ]
    assert [p.name for p in expired(parts, NOW - H)] == ["legacy"]


def test_steps_keep_existing_rows_unless_asked():
    cutoff = NOW - 24 * H
    parts = [
        Partition("emails_legacy", None, NOW - 50 * H),
        Partition("emails_old", NOW - 49 * H, NOW - 48 * H),
        Partition("emails_now", NOW - H, NOW),
        Partition("emails_default", None, None, is_default=True),
    ]
    assert steps("emails", parts, cutoff, include_existing=False) == [
        Step("existing", "emails_legacy"),
        Step("drop", "emails_old"),
        Step("delete", "emails_default"),
    ]
    assert steps("emails", parts, cutoff, include_existing=True)[0] == Step("drop", "emails_legacy")
    young_legacy = [Partition("emails_legacy", None, NOW)]
    assert steps("emails", young_legacy, cutoff, True) == [Step("delete", "emails_legacy")]
    # A plain table (Cybertemp's emails): batched deletes, which skip pre-upgrade rows.
    assert steps("emails", None, cutoff, include_existing=False) == [Step("delete", "emails")]


async def rows(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


async def count(url: str, sql: str) -> int:
    return int((await rows(url, sql))[0][0])


PRIVATE = frozenset({"p@example.com"})


async def test_maintain_reports_first_then_drops_keeping_private_mail(database_url):
    conn = await asyncpg.connect(database_url)
    await db_schema.install_schema(conn)
    # Written before any range partition existed: they sit in DEFAULT.
    await conn.execute(
        "INSERT INTO raw_messages (id, raw, received_at) "
        "SELECT gen_random_uuid(), 'x', now() FROM generate_series(1, 50)"
    )
    await conn.execute(
        "INSERT INTO emails (mailbox_owner, subject, body, from_addr, raw_id, received_at) "
        "SELECT CASE WHEN n = 1 THEN 'P@example.com' ELSE 'o@example.com' END, 's', '', '', "
        "id, received_at FROM (SELECT *, row_number() OVER () AS n FROM raw_messages) r"
    )
    await conn.close()
    pool = await db.create_pool(database_url)
    try:
        assert await retention.maintain(pool, 24, None) == {"emails": 0, "raw_messages": 0}
        assert await count(database_url, "SELECT count(*) FROM raw_messages_default") == 0
        before = {r[0] for r in await rows(database_url, "SELECT relname FROM pg_class")}
        await retention.maintain(pool, 24, PRIVATE)  # the first run: it only reports
        after = {r[0] for r in await rows(database_url, "SELECT relname FROM pg_class")}
        assert before == after
        assert await count(database_url, "SELECT count(*) FROM retention_state") == 1
        # Three days on, everything made today has expired, except private mail.
        later = datetime.datetime.now(UTC) + 72 * H
        gone = await retention.maintain(pool, 24, PRIVATE, now=later)
        assert gone == {"emails": 49, "raw_messages": 49}
        kept = await rows(
            database_url,
            "SELECT e.mailbox_owner, r.id IS NOT NULL FROM emails e "
            "LEFT JOIN raw_messages r ON r.id = e.raw_id",
        )
        assert [tuple(r) for r in kept] == [("P@example.com", True)]
        assert await count(database_url, "SELECT count(*) FROM emails_default") == 1
        parts = [parse_bound(*p) for p in await db_partitions.partitions(pool, "emails")]
        uppers = [p.upper for p in parts if p.upper]
        assert min(uppers) > later - 24 * H and max(uppers) >= later + 6 * H
        # The kept row stays kept by later runs, in DEFAULT.
        await retention.maintain(pool, 24, PRIVATE, now=later + H)
        assert await count(database_url, "SELECT count(*) FROM raw_messages") == 1
    finally:
        await pool.close()


async def test_partitions_of_rows_from_before_the_upgrade_are_kept(database_url):
    """Our old migration 002 put existing rows in a partition from MINVALUE."""
    conn = await asyncpg.connect(database_url)
    await db_schema.install_schema(conn)
    for table in retention_plan.TABLES:
        await conn.execute(
            f"CREATE TABLE {table}_legacy PARTITION OF {table} "
            "FOR VALUES FROM (MINVALUE) TO (now() - interval '47 hours')"
        )
    await conn.execute(
        "INSERT INTO raw_messages (id, raw, received_at) SELECT gen_random_uuid(), 'x', "
        "now() - interval '48 hours' FROM generate_series(1, 10)"
    )
    await conn.execute(
        "INSERT INTO emails (mailbox_owner, subject, body, from_addr, raw_id, received_at) "
        "SELECT CASE WHEN n = 1 THEN 'p@example.com' ELSE 'o@example.com' END, 's', '', '', "
        "id, received_at FROM (SELECT *, row_number() OVER () AS n FROM raw_messages) r"
    )
    await conn.execute("INSERT INTO retention_state DEFAULT VALUES")  # past the first run
    await conn.close()
    pool = await db.create_pool(database_url)
    try:
        assert await retention.maintain(pool, 24, PRIVATE) == {"emails": 0, "raw_messages": 0}
        assert await count(database_url, "SELECT count(*) FROM emails_legacy") == 10
        cutoff = datetime.datetime.now(UTC) - 24 * H
        found = await retention.survey(pool, cutoff, PRIVATE, include_existing=True)
        assert (found["emails"].expired, found["emails"].kept) == (9, 1)
        assert (found["raw_messages"].expired, found["raw_messages"].kept) == (9, 1)
        done = await retention.expire(pool, cutoff, PRIVATE, include_existing=True)
        assert (done["emails"].expired, done["emails"].partitions) == (9, 1)
        assert await count(database_url, "SELECT to_regclass('emails_legacy') IS NULL") == 1
        assert (
            await count(
                database_url,
                "SELECT count(*) FROM emails e JOIN raw_messages r "
                "ON r.id = e.raw_id WHERE e.mailbox_owner = 'p@example.com'",
            )
            == 1
        )
    finally:
        await pool.close()
