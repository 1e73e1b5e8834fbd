"""Rate limits shared by several hosts through Redis: the same flood spread
round-robin over three receivers is limited as one (README "Defence", rate
limits; "Running on several hosts"). The Redis is the test's own, on a free
port, so no other test's counters mix with these."""

from __future__ import annotations

import random
import subprocess
from collections import Counter
from collections.abc import Iterator

import pytest

from .defence_helpers import message, send
from .helpers import eventually, free_port, query

LIMIT = 10  # RATE_PER_NETWORK, per hour: the window opens at the first hit, no edge to cross
FLOOD = 3 * LIMIT + 6


@pytest.fixture
def redis_url(tmp_path) -> Iterator[str]:
    port = free_port()
    argv = f"redis-server --port {port} --bind 127.0.0.1 --appendonly no --dir {tmp_path}"
    process = subprocess.Popen(
        [*argv.split(), "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        eventually(lambda: ping(port), timeout=30)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.kill()
        process.wait(30)


def ping(port: int) -> bool:
    done = subprocess.run(
        ["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True, timeout=10
    )
    return done.stdout.strip() == "PONG"


def flood(ports: list[int], source: str) -> Counter[tuple[str, int]]:
    """FLOOD messages from `source`, round-robin over `ports`: (step, code) counted."""
    replies: Counter[tuple[str, int]] = Counter()
    for n in range(FLOOD):
        step, code, text = send(ports[n % len(ports)], source=source, data=message(f"f{n}"))
        if code != 250:
            assert (step, code, text) == ("MAIL", 451, b"4.7.1 Too much mail, try again later")
        replies[step, code] += 1
    return replies


def hosts(make_server, redis: str, mode: str) -> list[int]:
    settings = {
        "rate_limits": mode,
        "rate_limit_storage": redis,
        "rate_per_network": f"{LIMIT}/hour",
    }
    return [make_server(**settings).port for _ in range(3)]


def source_address() -> str:
    """A loopback address in a /24 of its own (the per-network key)."""
    return f"127.{random.randrange(1, 255)}.{random.randrange(1, 255)}.7"


def test_flood_over_three_hosts_is_limited_as_one(make_server, redis_url):
    ports = hosts(make_server, redis_url, "enforce")
    replies = flood(ports, source_address())
    assert replies == {("DATA", 250): LIMIT, ("MAIL", 451): FLOOD - LIMIT}


def test_record_mode_over_three_hosts_marks_the_rest_junk(make_server, redis_url, database_url):
    ports = hosts(make_server, redis_url, "record")
    assert flood(ports, source_address()) == {("DATA", 250): FLOOD}

    def junk() -> Counter[bool]:
        return Counter(r["junk"] for r in query(database_url, "SELECT junk FROM emails"))

    assert eventually(lambda: junk() == {False: LIMIT, True: FLOOD - LIMIT})
