"""Pure pieces of the SMTP stage: the address fast path, enhanced codes,
refusal log, connection counters."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from app import config
from app.connections import Connections, RefusalLog, client_key
from app.replies import with_enhanced_code
from app.smtp import Handler, Session


def stock_getaddr(arg: str):
    session = Session.__new__(Session)
    session.local_part_limit = 0
    return super(Session, session)._getaddr(arg)


def fast_getaddr(arg: str):
    session = Session.__new__(Session)
    session.local_part_limit = 0
    return session._getaddr(arg)


local = st.text(alphabet="abcXYZ09._+-=!#$%&'*/?^`{|}~é\"@ ", min_size=1, max_size=12)
domain = st.text(alphabet="abc09.-", min_size=1, max_size=12)
tail = st.sampled_from(["", " SIZE=100", " BODY=8BITMIME SMTPUTF8", ">", " "])


@given(local=local, domain=domain, tail=tail, space=st.sampled_from(["", " "]))
def test_fast_path_agrees_with_aiosmtpd(local, domain, tail, space):
    arg = f"{space}<{local}@{domain}>{tail}"
    expected = stock_getaddr(arg)
    assert fast_getaddr(arg) == expected


def test_fast_path_is_taken_for_plain_addresses():
    assert fast_getaddr("<user.name+tag@example.com> SIZE=10") == (
        "user.name+tag@example.com",
        "SIZE=10",
    )
    assert fast_getaddr("<>") == ("<>", "")


def test_enhanced_codes_added_to_errors_only():
    assert with_enhanced_code(b"503 Error: need MAIL") == b"503 5.5.1 Error: need MAIL"
    assert with_enhanced_code(b"550 5.7.1 Domain not allowed") == b"550 5.7.1 Domain not allowed"
    assert with_enhanced_code(b"250 HELP") == b"250 HELP"
    assert with_enhanced_code(b"421 4.7.0 x") == b"421 4.7.0 x"


def test_refusal_log_is_rate_limited(caplog):
    refusals = RefusalLog(per_minute=5)
    with caplog.at_level("WARNING", logger="app.connections"):
        for n in range(100):
            refusals.note(f"10.0.0.{n}", "too many connections")
    assert len(caplog.records) == 5 and refusals.suppressed == 95 and refusals.total == 100


def test_connections_counters_are_bounded_by_live_sessions():
    connections = Connections(max_total=3, max_per_client=2, max_receiving_bytes=1000)
    settings = config.load({}, env_file=None)
    handler = Handler(settings, lambda: None, None, None)  # type: ignore[arg-type]
    sessions = [
        Session(handler, connections, settings, hostname="h", loop=asyncio.new_event_loop())
        for _ in range(4)
    ]
    for session in sessions[:3]:
        assert connections.admit(session) is None
    assert connections.admit(sessions[3]) is not None  # total
    assert connections.count_client("1.1.1.1") is None
    assert connections.count_client("1.1.1.1") is None
    assert connections.count_client("1.1.1.1") is not None  # per client
    assert connections.count_client("2.2.2.2") is None
    assert connections.reserve(600) and not connections.reserve(600)  # the byte budget
    for session, key, held in (
        (sessions[0], "1.1.1.1", 600),
        (sessions[1], "1.1.1.1", 0),
        (sessions[2], "2.2.2.2", 0),
    ):
        connections.release(session, key, held)
    assert not connections.per_client and not connections.sessions
    assert connections.receiving_bytes == 0
    for session in sessions:
        session.loop.close()


def test_ipv6_clients_count_per_64():
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:ffff::9")
    assert client_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"  # IPv4-mapped: the IPv4 address
    assert client_key("192.0.2.7") == "192.0.2.7"
