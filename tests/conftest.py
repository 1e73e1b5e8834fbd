from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from .dnsserver import DnsServer
from .helpers import Server, create_database, drop_database, install_schema, url_for
from .load import THREAD_PREFIX

DOMAINS = ("example.com", "*.example.org", "例え.jp")

# The longest tests (a fresh clone's install, the README's steps, the corpus,
# several hosts) start first, so that the parallel run does not end with
# every other worker idle, waiting on one of them.
SLOW_FIRST = (
    "test_first_run.py",
    "test_install.py",
    "test_schema.py",
    "test_receive.py",
    "test_retention_locks.py",
    "test_hosts_mx.py",
    "test_hostile.py",
    "test_poolers.py",
    "test_dedup.py",
    "test_bench_smoke.py",
    "test_api_bench_smoke.py",
    "test_review_writer_hol.py",
    "test_durability.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    order = {name: rank for rank, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: order.get(item.path.name, len(SLOW_FIRST)))


@pytest.fixture
def database_url() -> Iterator[str]:
    name = create_database()
    try:
        yield url_for(name)
    finally:
        drop_database(name)


@pytest.fixture(scope="session")
def quiet_dns() -> Iterator[DnsServer]:
    """A local DNS server with no zones (NXDOMAIN for all): the suite's resolver,
    so the authentication checks run on every message without the network."""
    server = DnsServer({})
    yield server
    server.stop()


@pytest.fixture
def make_server(database_url: str, tmp_path, quiet_dns) -> Iterator[Callable[..., Server]]:
    """Start the real service on a free port; extra settings as keyword arguments."""
    servers: list[Server] = []

    def make(domains: tuple[str, ...] = DOMAINS, start: bool = True, **settings: str) -> Server:
        from app.policy import canonical_pattern

        stored = tuple(canonical_pattern(entry) for entry in domains)
        assert None not in stored
        install_schema(database_url, stored)  # type: ignore[arg-type]
        env = {
            "DATABASE_URL": database_url,
            "SPOOL_DIR": str(tmp_path / "spool"),
            "DNS_RESOLVER": quiet_dns.address,
            # The suite's load tests are floods of one mailbox from 127.0.0.1
            # by design: rate limits are on only where a test asks
            # (tests/test_defence_*.py).
            "RATE_LIMITS": "off",
            **{k.upper(): str(v) for k, v in settings.items()},
        }
        server = Server(env)
        servers.append(server)
        return server.start() if start else server

    yield make
    for server in servers:
        if server.process is not None:
            server.kill()


@pytest.fixture(autouse=True)
def no_load_thread_outlives_its_test() -> Iterator[None]:
    """A load thread still running after its test would send mail into the next one."""
    yield
    alive = [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]
    for thread in alive:
        thread.join(60)
    assert not [t.name for t in alive if t.is_alive()], "load threads outlived their test"
