"""Rate limits through the real server: floods to one mailbox (452 4.2.2),
from one network and one sender domain (451 4.7.1), errors from one address
(blocked: 421 at connect for RATE_BLOCK_SECONDS), record mode (junk), the
counters shared by two servers through Redis, and Redis down (nothing
refused, logged)."""

from __future__ import annotations

import smtplib
import uuid

from .defence_helpers import greeting, send, stored

ON = {"rate_limits": "enforce"}


def test_mailbox_flood_and_sender_domain(make_server, database_url):
    server = make_server(rate_per_mailbox="3/minute", rate_per_sender_domain="5/minute", **ON)
    for _ in range(3):
        assert send(server.port, recipients=("flood@example.com",))[:2] == ("DATA", 250)
    assert send(server.port, recipients=("flood@example.com",)) == (
        "RCPT",
        452,
        b"4.2.2 Mailbox receiving too much mail, try again later",
    )
    server.wait_for_log(r"refused 127\.0\.0\.1: rate limit at RCPT \(flood@example\.com\)")
    # The sender domain has sent 3 messages (a refused one does not count):
    # the 4th and 5th pass, the 6th is refused at MAIL.
    for _ in range(2):
        assert send(server.port, recipients=("other@example.com",))[:2] == ("DATA", 250)
    assert send(server.port, "z@sender.test") == (
        "MAIL",
        451,
        b"4.7.1 Too much mail, try again later",
    )
    assert send(server.port, "z@elsewhere.test")[:2] == ("DATA", 250)


def test_network_limit_counts_the_whole_slash_24(make_server):
    server = make_server(rate_per_network="4/minute", **ON)
    for n in range(4):
        assert send(server.port, source=f"127.0.0.{10 + n}")[:2] == ("DATA", 250)
    assert send(server.port, source="127.0.0.99")[:2] == ("MAIL", 451)


def test_errors_block_the_address(make_server):
    server = make_server(rate_errors_per_ip="5/minute", rate_block_seconds="600", **ON)
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30, source_address=("127.0.0.20", 0)) as c:
        c.ehlo("prober.test")
        c.mail("a@sender.test")
        replies = [c.rcpt(f"u{n}@not-ours.test")[0] for n in range(5)]
        assert replies == [550] * 5
        assert c.rcpt("u5@not-ours.test")[0] == 550  # the 6th error: blocked after it
        try:
            code = c.noop()[0]
        except smtplib.SMTPServerDisconnected:
            code = 421
        assert code == 421
    assert greeting(server.port, "127.0.0.20") == (
        b"421 4.7.0 Too many errors from your address, try again later"
    )
    assert greeting(server.port, "127.0.0.21").startswith(b"220 ")
    server.wait_for_log(r"refused 127\.0\.0\.20: blocked for errors")


def test_record_mode_marks_the_flood_junk(make_server, database_url):
    server = make_server(rate_limits="record", rate_per_mailbox="1/minute")
    replies = [send(server.port)[2] for _ in range(2)]
    first, second = (stored(database_url, reply) for reply in replies)
    assert first["junk"] is False
    assert second["junk"] is True
    assert second["verdicts"]["reasons"] == [
        "rate: over RATE_PER_MAILBOX (1 per 1 minute) for x@example.com"
    ]


def test_two_servers_share_counters_in_redis(make_server):
    storage = {"rate_limit_storage": "redis://127.0.0.1:6379/0", "rate_per_mailbox": "4/minute"}
    first, second = make_server(**storage, **ON), make_server(**storage, **ON)
    mailbox = f"{uuid.uuid4().hex}@example.com"  # fresh counters in a shared Redis
    for server in (first, second, first, second):
        assert send(server.port, recipients=(mailbox,))[:2] == ("DATA", 250)
    assert send(second.port, recipients=(mailbox,))[:2] == ("RCPT", 452)
    assert send(first.port, recipients=(mailbox,))[:2] == ("RCPT", 452)


def test_redis_down_refuses_nothing(make_server):
    server = make_server(
        rate_limit_storage="redis://127.0.0.1:9/0", rate_per_mailbox="1/minute", **ON
    )
    for _ in range(3):
        assert send(server.port)[:2] == ("DATA", 250)
    server.wait_for_log(r"\[limits\] redis storage failed .*: not counting, nothing refused")
