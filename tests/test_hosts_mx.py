"""Three receivers behind MX records, fed by a real MTA (README "Running on
several hosts"): each in a network namespace of its own, one PostgreSQL, a
private Postfix that finds them through a DNS server of the test
(tests/topology.py). Under a relay of corpus mail, hosts are killed,
restarted, stopped and slowed: every message Postfix reports delivered is
stored exactly once, resends after an ambiguous failure included."""

from __future__ import annotations

import random
import re
import signal
import threading
from collections import Counter
from collections.abc import Iterator

import pytest

from .helpers import corpus_files, eventually, install_schema, query, script
from .topology import DOMAIN, Receiver, Topology, ip

MESSAGES = 300
MTA = 40  # the MTA's host number on the bridge
SENT = re.compile(r" to=<([^>]+)>, relay=\S+\[([\d.]+)\]:25, .* status=sent ")
TROUBLE = re.compile(
    r"^.*(?:status=(?:deferred|bounced)|connect to |lost connection|timed out|refused to talk).*$",
    re.MULTILINE,
)


@pytest.fixture
def topology(tmp_path) -> Iterator[Topology]:
    try:
        topo = Topology(tmp_path)
    except RuntimeError as error:  # not root, or no CAP_NET_ADMIN (a container)
        pytest.skip(f"cannot make network namespaces here: {error}")
    try:
        yield topo
    finally:
        topo.close()


def corpus_sample(count: int) -> list[bytes]:
    """`count` varied corpus messages (under 100 KB), the same ones every run."""
    files = [p for p in corpus_files() if p.stat().st_size < 100_000]
    return [p.read_bytes() for p in random.Random(24).sample(files, count)]


def delivered(log: str) -> dict[str, str]:
    """recipient -> address of the host Postfix says took it (status=sent)."""
    return {m.group(1): m.group(2) for m in SENT.finditer(log)}


def stored(url: str) -> Counter[str]:
    rows = query(url, "SELECT mailbox_owner, count(*) FROM emails GROUP BY 1")
    return Counter({r[0]: r[1] for r in rows})


def start(topo: Topology, url: str, count: int, **settings: str) -> list[Receiver]:
    hosts = [topo.host(i, f"r{i}") for i in range(count)]
    receivers = [topo.receiver(i, hosts[i], url, **settings).start() for i in range(count)]
    return [receiver.ready() for receiver in receivers]


def relay(postfix, messages: list[bytes], first: int = 0) -> threading.Thread:
    def inject() -> None:
        for n, raw in enumerate(messages, first):
            postfix.inject(raw, f"m{n}@{DOMAIN}")

    thread = threading.Thread(target=inject, daemon=True)
    thread.start()
    return thread


def troubles(log: str) -> list[str]:
    return [m.group(0) for m in TROUBLE.finditer(log)]


def test_equal_mx_kill_restart_and_stop(topology: Topology, database_url):
    install_schema(database_url, (DOMAIN,))
    topology.dns([(0, 10), (1, 10), (2, 10)])
    receivers = start(topology, database_url, 3)
    postfix = topology.mta(MTA)
    injecting = relay(postfix, corpus_sample(MESSAGES))
    progress = lambda at_least: lambda: len(delivered(postfix.log)) >= at_least  # noqa: E731
    eventually(progress(MESSAGES // 5), timeout=120)
    receivers[0].kill()  # kill -9, mid-relay
    eventually(progress(MESSAGES * 2 // 5), timeout=120)
    receivers[0] = topology.receiver(0, f"tm{topology.tag}r0", database_url).start().ready()
    eventually(progress(MESSAGES * 3 // 5), timeout=120)
    assert receivers[1].stop(signal.SIGTERM) == 0  # drains, then stays down
    injecting.join(120)
    eventually(progress(MESSAGES), timeout=150)
    sent = delivered(postfix.log)
    assert len(sent) == MESSAGES
    assert_once(database_url, sent)
    # Whatever went wrong for Postfix was a host that was down at the time.
    down = {topology.address(0), topology.address(1)}
    for line in troubles(postfix.log):
        assert any(f"[{address}]" in line for address in down), line
        assert "Connection refused" in line or "lost connection" in line, line
    deferred = [line for line in troubles(postfix.log) if "status=deferred" in line]
    assert all("Connection refused" in line for line in deferred), deferred
    # The restarted host and the others took their share after the kill.
    assert set(sent.values()) == {topology.address(i) for i in range(3)}
    print(summary(postfix.log, receivers))


def assert_once(url: str, sent: dict[str, str]) -> None:
    """Each message Postfix delivered is stored, once (the writer may lag)."""
    eventually(lambda: sum(stored(url).values()) >= len(sent), timeout=30)
    assert stored(url) == Counter(dict.fromkeys(sent, 1))


def summary(log: str, receivers: list[Receiver]) -> str:
    """What happened, for the -rP output: deliveries per host, Postfix's
    troubles, resends found by the receivers."""
    hosts = Counter(delivered(log).values())
    copies = sum(
        int(n) for r in receivers for n in re.findall(r"(\d+) resent rows were copies", r.log)
    )
    ambiguous = log.count("message may be sent more than once")
    return (
        f"delivered per host {dict(hosts)}; Postfix troubles {len(troubles(log))} "
        f"({ambiguous} ambiguous); resent copies not stored again: {copies}"
    )


SLOW_COMMITS = """
CREATE TABLE slow_switch (on_host text PRIMARY KEY);
CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM slow_switch WHERE on_host = current_setting('application_name'))
    THEN PERFORM pg_sleep(4);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER slow_commit AFTER INSERT ON raw_messages
    FOR EACH STATEMENT EXECUTE FUNCTION slow_commit();
"""


def test_primary_and_backup_resend_after_ambiguous_failure(topology: Topology, database_url):
    """The primary commits, but its 250 is lost on the way (a route to the
    MTA dropped while its commits are slowed): Postfix gives up waiting and
    sends again, to a backup, which finds the copy; each message is stored
    once. Its sessions never break, so it has no reason to revoke."""
    install_schema(database_url, (DOMAIN,))
    topology.dns([(0, 10), (1, 20), (2, 20)])
    receivers = start(topology, database_url, 3)
    script(database_url, SLOW_COMMITS)
    postfix = topology.mta(MTA, data_done=8)
    query(database_url, "INSERT INTO slow_switch VALUES ('tempmail mx0')")  # HOST_NAME
    small = [raw for raw in corpus_sample(MESSAGES) if len(raw) < 6000]  # in flight without ACKs
    relay(postfix, small[:20]).join(60)
    eventually(lambda: sleeping(database_url, "tempmail mx0"), timeout=60)
    primary, mta = f"tm{topology.tag}r0", topology.address(MTA)
    ip("route", "add", "blackhole", f"{mta}/32", netns=primary)
    query(database_url, "DELETE FROM slow_switch")
    eventually(lambda: len(delivered(postfix.log)) == 20, timeout=120)
    ip("route", "del", "blackhole", f"{mta}/32", netns=primary)
    relay(postfix, small[20:40], first=20).join(60)  # the primary is well again
    eventually(lambda: len(delivered(postfix.log)) == 40, timeout=120)
    sent = delivered(postfix.log)
    assert_once(database_url, sent)
    assert {sent[f"m{n}@{DOMAIN}"] for n in range(20, 40)} == {topology.address(0)}
    lines = troubles(postfix.log)  # only the primary, unreachable for a while
    assert all(f"[{topology.address(0)}]" in line for line in lines), lines
    assert "message may be sent more than once" in postfix.log
    copies = r"\[store\] \d+ resent rows were copies of stored ones"
    assert any(re.search(copies, r.log) for r in receivers[1:])
    print(summary(postfix.log, receivers))


def sleeping(url: str, host: str) -> bool:
    """A transaction of `host` is held in SLOW_COMMITS's sleep."""
    sql = "SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND wait_event = 'PgSleep'"
    return bool(query(url, sql, host))
