"""Review (issue 21 item 2): hostile headers must not stall the service.

A Subject of many RFC 2047 encoded words (`=?utf-8?q?a?=` repeated) parsed
in quadratic time (13 s at 2 MB, in the standard library's decode_header);
under 1 MiB it ran on the event loop (a 980 KB one held new connections'
220 for 4.35 s), above it in the single parser process, where legitimate
mail queued behind it (a 1.56 MB message got 451 after 30 s).

Now header values are decoded up to a cap, a message that may parse slowly
is parsed in one of several parser processes, and a parse past
PARSE_TIMEOUT is abandoned: the message is stored with its raw bytes and a
note, never refused. The 220 delay and the parse times are measured by
bench/write_path.py (timings are not asserted here).
"""

from __future__ import annotations

import os
import select
import signal
import smtplib
import socket
from typing import BinaryIO

import pytest

from app.parse import HEADER_DECODE_MAX
from app.prepare import ABANDONED_NOTE

from .helpers import as_sent, eventually, free_port, query
from .test_metrics import samples

WORD = b"=?utf-8?q?a?= "


def message(subject: bytes, to: bytes = b"r@example.com", body: bytes = b"body") -> bytes:
    return b"From: s@sender.test\r\nTo: " + to + b"\r\nSubject: " + subject + b"\r\n\r\n" + body


def many_addresses(size: int) -> bytes:
    """A To header of `size` bytes of addresses: parsing it takes seconds."""
    return b", ".join(b"u%d@example.com" % n for n in range(size // 17))


def sent_with(port: int, raw: bytes, source: str = "127.0.0.1") -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=120, source_address=(source, 0)) as client:
        client.sendmail("s@sender.test", ["r@example.com"], raw)  # raises unless 250


def stored(database_url: str, marker: bytes) -> list:
    return query(
        database_url,
        "SELECT e.subject, e.body, r.raw FROM emails e JOIN raw_messages r ON r.id = e.raw_id "
        "WHERE position($1::bytea in r.raw) > 0",
        marker,
    )


def test_a_subject_of_two_million_encoded_bytes_is_decoded_up_to_the_cap(make_server, database_url):
    server = make_server()  # durable: the 250 waits for the parse and the commit
    raw = message(WORD * (2_000_000 // len(WORD)), body=b"huge-subject")
    sent_with(server.port, raw)
    [row] = stored(database_url, b"huge-subject")
    assert 0 < len(row["subject"]) <= HEADER_DECODE_MAX and set(row["subject"]) == {"a"}
    assert as_sent(row["raw"]) == raw + b"\r\n"  # the raw message is whole


def test_a_parse_past_its_bound_is_stored_raw_with_a_note(make_server, database_url):
    server = make_server(parse_timeout="1")
    raw = message(b"slow", to=many_addresses(2_000_000), body=b"slow-to-parse")
    sent_with(server.port, raw)
    [row] = stored(database_url, b"slow-to-parse")
    assert row["body"] == ABANDONED_NOTE
    assert as_sent(row["raw"]) == raw + b"\r\n"
    assert "was not done within PARSE_TIMEOUT" in server.log
    sent_with(server.port, message(b"after", body=b"plain"))  # the service goes on
    assert [r["subject"] for r in stored(database_url, b"plain")] == ["after"]


def open_data(port: int, raw: bytes, source: str = "127.0.0.1") -> tuple[socket.socket, BinaryIO]:
    """A session that has sent a whole message (its reply not read yet)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=120, source_address=(source, 0))
    reader = sock.makefile("rb")
    reader.readline()  # 220
    for command in (b"EHLO h.test", b"MAIL FROM:<s@sender.test>", b"RCPT TO:<r@example.com>"):
        sock.sendall(command + b"\r\n")
        while (line := reader.readline())[3:4] == b"-":
            pass
        assert line[:3] == b"250", line
    sock.sendall(b"DATA\r\n")
    assert reader.readline()[:3] == b"354"
    sock.sendall(raw + b"\r\n.\r\n")
    return sock, reader


def test_a_message_that_parses_slowly_does_not_hold_back_another(make_server, database_url):
    server = make_server(parse_timeout="5")
    hostile, reply = open_data(server.port, message(b"hostile", to=many_addresses(8_000_000)))
    # A legitimate 1.2 MB message, parsed in a parser process too, after it.
    sent_with(server.port, message(b"legit", body=(b"x" * 76 + b"\r\n") * 16_000))
    readable, _, _ = select.select([hostile], [], [], 0)
    assert not readable, "the hostile message was answered first: the other waited for it"
    assert reply.readline()[:3] == b"250"
    reply.close()
    hostile.close()
    assert [r["subject"] for r in stored(database_url, b"legit")] == ["legit"]
    eventually(lambda: stored(database_url, b"hostile"))


def test_a_dozen_slow_messages_do_not_hold_back_another(make_server, database_url):
    """Review: sixteen hostile messages queued for the two parser processes
    (each parse abandoned at PARSE_TIMEOUT) held a legitimate one's durable
    250 for their whole queue: 451 at DURABLE_TIMEOUT. Its wait for a free
    process is bounded too: past it, it is stored unparsed, raw kept."""
    metrics_port = free_port()
    server = make_server(parse_timeout="5", durable_timeout="20", metrics_port=str(metrics_port))
    # From two addresses: 73.7 MiB from one would pass its 64 MiB share of the
    # receive budget (the last would get 452 at DATA).
    hostile = [
        open_data(
            server.port,
            message(b"hostile%d" % n, to=many_addresses(4_000_000)),
            source=f"127.0.0.{3 + n % 2}",
        )
        for n in range(16)
    ]
    try:
        # Once two were abandoned (all 16 long received), 14 x 5 s over two
        # processes is 35 s of queue left: past DURABLE_TIMEOUT.
        eventually(lambda: samples(metrics_port).get("tempmail_parse_abandoned_total", 0) >= 2)
        # From another address again: each of the two is near its share.
        legit = message(b"legit", body=(b"x" * 76 + b"\r\n") * 16_000)
        sent_with(server.port, legit, source="127.0.0.2")
        assert stored(database_url, b"legit")
        replies = [reply.readline()[:3] for _, reply in hostile]
    finally:
        for sock, reply in hostile:
            reply.close()
            sock.close()
    print("hostile replies:", replies)
    assert set(replies) <= {b"250", b"451"}
    assert len(stored(database_url, b"hostile")) == replies.count(b"250")


@pytest.mark.parametrize("started", [False, True])
def test_parser_processes_outlive_the_group_stop_signal(make_server, database_url, started):
    """systemd signals the whole process group at stop: the parser processes
    must still parse what the service drains, whether the signal comes while
    they start (spawned for this message) or while they parse."""
    server = make_server(ack_mode="instant", parse_timeout="120")
    if started:
        sent_with(server.port, message(b"first", to=many_addresses(100_000), body=b"warm"))
        eventually(lambda: stored(database_url, b"warm"))  # the parser processes are up
    slow = message(b"during the stop", to=many_addresses(1_000_000), body=b"last")
    sent_with(server.port, slow)  # its parse takes seconds, in a parser process
    assert server.process is not None
    os.killpg(server.process.pid, signal.SIGTERM)  # the service and its parser processes
    assert server.process.wait(120) == 0
    server.close()
    [row] = stored(database_url, b"last")
    assert row["subject"] == "during the stop" and row["body"].strip() == "last"
