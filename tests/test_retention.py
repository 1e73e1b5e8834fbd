"""retention.py: partition planning (pure) and maintenance on a real PostgreSQL."""

from __future__ import annotations

import datetime

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app import db, retention
from app.retention import Partition, expired, parse_bound, partition_width, plan

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


@given(
    st.integers(min_value=0, max_value=10**6).map(lambda m: NOW + datetime.timedelta(minutes=m)),
    st.sampled_from(retention.WIDTHS_HOURS).map(lambda w: w * H),
)
def test_plan_ranges_are_contiguous_aligned_and_cover_now(now, width):
    ranges = plan([], now, width)
    assert ranges[0][0] <= now < ranges[0][1]
    for lower, upper in ranges:
        assert upper == retention.floor_to(lower, width) + width
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))


def test_expired_needs_the_whole_range_past_the_cutoff():
    parts = [
        Partition("legacy", None, NOW - 2 * H),
        Partition("boundary", NOW - 2 * H, NOW),
        Partition("default", None, None, is_default=True),
    ]
    assert [p.name for p in expired(parts, NOW - H)] == ["legacy"]


async def rows(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


async def test_maintain_moves_default_rows_creates_ahead_and_drops(database_url):
    conn = await asyncpg.connect(database_url)
    await db.install_schema(conn)
    # Written before any range partition existed: they sit in DEFAULT.
    await conn.execute(
        "INSERT INTO raw_messages (id, raw, received_at) "
        "SELECT gen_random_uuid(), 'x', now() FROM generate_series(1, 50)"
    )
    await conn.close()
    pool = await db.create_pool(database_url)
    try:
        await retention.maintain(pool, 24)
        assert (await rows(database_url, "SELECT count(*) FROM raw_messages_default"))[0][0] == 0
        assert (await rows(database_url, "SELECT count(*) FROM raw_messages"))[0][0] == 50
        before = {r[0] for r in await rows(database_url, "SELECT relname FROM pg_class")}
        await retention.maintain(pool, 24)  # nothing left to do
        after = {r[0] for r in await rows(database_url, "SELECT relname FROM pg_class")}
        assert before == after
        # Three days on, everything made today has expired and the future is covered.
        later = datetime.datetime.now(UTC) + 72 * H
        gone = await retention.maintain(pool, 24, now=later)
        assert gone["raw_messages"] == 50
        assert (await rows(database_url, "SELECT count(*) FROM raw_messages"))[0][0] == 0
        parts = [parse_bound(*p) for p in await db.partitions(pool, "emails")]
        uppers = [p.upper for p in parts if p.upper]
        assert min(uppers) > later - 24 * H and max(uppers) >= later + 6 * H
    finally:
        await pool.close()
