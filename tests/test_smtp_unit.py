"""Pure pieces of the SMTP stage: the address fast path, enhanced codes,
refusal log, connection counters."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from app import config
from app.clients import client_key
from app.connections import Connections, Hold, RefusalLog
from app.replies import with_enhanced_code
from app.session import Session
from app.smtp import Handler


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
    connections = Connections(
        max_total=3, max_per_client=2, max_receiving_bytes=1000, message_size=100
    )
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
    first, second = Hold("1.1.1.1"), Hold("2.2.2.2")
    assert connections.grow(first, 250) and not connections.grow(first, 300)  # client share
    assert connections.grow(second, 250) and connections.receiving_bytes == 500
    for session, key, hold in (
        (sessions[0], "1.1.1.1", first),
        (sessions[1], "1.1.1.1", Hold()),
        (sessions[2], "2.2.2.2", second),
    ):
        connections.release(session, key, hold)
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


# What aiosmtpd 1.4.6's SMTP.__init__ makes (with our options). Session.factory
# copies these from a prototype instead of running __init__ per connection: an
# aiosmtpd that adds or drops one must be looked at before it is trusted.
AIOSMTPD_ATTRIBUTES = {
    "__ident__", "_auth_callback", "_auth_methods", "_auth_require_tls", "_auth_required",
    "_authenticator", "_call_limit_base", "_call_limit_default", "_client_connected_cb",
    "_closed", "_connection_lost", "_decode_data", "_drain_waiters", "_ehlo_hook_ver",
    "_enforce_call_limit", "_handle_hooks", "_handler_coroutine", "_loop",
    "_original_transport", "_over_ssl", "_paused", "_proxy_timeout", "_reject_connection",
    "_smtp_methods", "_source_traceback", "_stream_reader_wr", "_stream_writer",
    "_strong_reader", "_task", "_timeout_duration", "_timeout_handle",
    "_tls_handshake_okay", "_tls_protocol", "_transport", "data_size_limit",
    "enable_SMTPUTF8", "envelope", "event_handler", "hostname", "loop", "require_starttls",
    "session", "tls_context", "transport",
}  # fmt: skip
# Per connection, never shared: the stream, the protocol's state, bound commands.
OWN = {"_closed", "_drain_waiters", "_strong_reader", "_stream_reader_wr", "_smtp_methods"}


async def test_session_factory_copies_what_aiosmtpd_init_makes():
    from aiosmtpd.smtp import SMTP

    from app.smtp import session_options

    settings = config.load({}, env_file=None)
    connections = Connections(10, 10, 1 << 30, 1 << 20)
    handler = Handler(settings, lambda: None, None, None)  # type: ignore[arg-type]
    options = session_options(settings, None)
    stock = SMTP(handler, loop=asyncio.get_running_loop(), **options)
    assert set(vars(stock)) == AIOSMTPD_ATTRIBUTES, set(vars(stock)) ^ AIOSMTPD_ATTRIBUTES
    make = Session.factory(handler, connections, settings, lambda: None, **options)
    first, second = make(), make()
    for name in AIOSMTPD_ATTRIBUTES:
        assert type(getattr(first, name)) is type(getattr(stock, name)), name
        if name in OWN:
            assert getattr(first, name) is not getattr(second, name), name
    assert first._smtp_methods.keys() == stock._smtp_methods.keys()
    assert all(method.__self__ is first for method in first._smtp_methods.values())
    assert first._strong_reader is not second._strong_reader
    assert first._client_connected_cb.__self__ is first
    assert first._auth_methods == {}  # no AUTH offered, none shared
    assert first.command_size_limits is not second.command_size_limits


def test_later_transfers_give_way_to_earlier_ones():
    """Bodies streaming past the budget: the transfers that began last are
    refused, the oldest finish; SIZE= reservations are never made to give way."""
    connections = Connections(10, 10, max_receiving_bytes=1000, message_size=1000)
    declared, old, young = Hold("a"), Hold("b"), Hold("c")
    assert connections.grow(declared, 300)
    declared.declared = True
    for hold in (declared, old, young):
        connections.start_transfer(hold)
    assert connections.grow(young, 400) and connections.grow(old, 300)
    assert connections.grow(old, 600)  # takes young's place
    assert young.evicted and young.size == 0 and not connections.grow(young, 500)
    assert not declared.evicted and connections.receiving_bytes == 900
    assert not connections.grow(old, 800)  # the declared reservation stays


def test_one_clients_transfers_give_way_to_its_oldest():
    """Many messages at once from one client, past its share of the budget:
    its later transfers give way, so the oldest finish (all used to be refused
    once the share was full, however far along)."""
    connections = Connections(10, 10, max_receiving_bytes=4000, message_size=1000)
    holds = [Hold("one") for _ in range(5)]
    other = Hold("two")
    for hold in (*holds, other):
        connections.start_transfer(hold)
        assert connections.grow(hold, 200)
    assert connections.client_share == 1000 and connections.client_bytes["one"] == 1000
    assert connections.grow(holds[0], 600)  # the oldest takes the two youngest places
    assert [h.evicted for h in holds] == [False, False, False, True, True]
    assert not other.evicted  # another client's transfer is not its to take
    assert connections.grow(holds[1], 400) and holds[2].evicted  # the next oldest, likewise
    assert not connections.grow(holds[1], 500)  # the share is full, nothing later to take
