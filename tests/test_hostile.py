"""Port 25 on the open internet: limits, timeouts, smuggling, floods, fuzzing.

Each limit test asserts the exact reply and that the session goes on (or is
closed) as intended. Loops are bounded and aimed at 127.0.0.1 only.
"""

from __future__ import annotations

import random
import re
import select
import socket
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .helpers import as_sent, corpus_files, eventually, normalised, query, queued_id
from .raw import REPLY_LINE, Raw


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1])


def transaction(conn: Raw, rcpt: bytes = b"u@example.com") -> None:
    assert conn.cmd(b"MAIL FROM:<s@sender.test>").startswith(b"250")
    assert conn.cmd(b"RCPT TO:<" + rcpt + b">").startswith(b"250")
    assert conn.cmd(b"DATA").startswith(b"354")


def test_message_size_limits(make_server, database_url):
    server = make_server(max_message_size="10000")
    with Raw(server.port).hello() as conn:
        assert conn.cmd(b"MAIL FROM:<s@sender.test> SIZE=10001") == (
            b"552 5.3.4 Message too big\r\n"
        )
        # Oversize body: read to the end, discarded, 552, and the session is in sync.
        transaction(conn)
        conn.send(b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 30 + b".\r\n")
        assert conn.reply() == b"552 5.3.4 Message too big\r\n"
        assert conn.cmd(b"NOOP").startswith(b"250")
        # A body over its SIZE= estimate but under the limit is fine (Postfix estimates).
        assert conn.cmd(b"MAIL FROM:<s@sender.test> SIZE=100").startswith(b"250")
        assert conn.cmd(b"RCPT TO:<u@example.com>").startswith(b"250")
        assert conn.cmd(b"DATA").startswith(b"354")
        conn.send(b"Subject: ok\r\n\r\n" + b"z" * 5000 + b"\r\n.\r\n")
        assert conn.reply().startswith(b"250 2.0.0")
    eventually(lambda: query(database_url, "SELECT subject FROM emails") == [("ok",)])


def test_recipient_limit(make_server, database_url):
    server = make_server(max_recipients="3")
    with Raw(server.port).hello() as conn:
        assert conn.cmd(b"MAIL FROM:<s@sender.test>").startswith(b"250")
        for n in range(3):
            assert conn.cmd(b"RCPT TO:<r%d@example.com>" % n).startswith(b"250")
        assert conn.cmd(b"RCPT TO:<r9@example.com>") == b"452 4.5.3 Too many recipients\r\n"
        assert conn.cmd(b"DATA").startswith(b"354")
        conn.send(b"Subject: three\r\n\r\nx\r\n.\r\n")
        assert conn.reply().startswith(b"250")
    eventually(lambda: query(database_url, "SELECT count(*) FROM emails")[0][0] == 3)


def test_connection_limits_total_and_per_ip(make_server):
    server = make_server(max_connections="4", max_connections_per_ip="2")
    first = [Raw(server.port).hello() for _ in range(2)]
    with Raw(server.port) as third:
        assert (
            third.reply()
            == b"421 4.7.0 Too many connections from your address, try again later\r\n"
        )
        assert third.closed()
    others = [Raw(server.port, source="127.0.0.2").hello() for _ in range(2)]  # another address
    with Raw(server.port, source="127.0.0.3") as fifth:
        assert fifth.reply() == b"421 4.7.0 Too many connections, try again later\r\n"
        assert fifth.closed()
    for conn in first + others:
        conn.close()
    eventually(lambda: _greets(server.port))  # slots are freed when sessions end
    server.wait_for_log(
        re.escape("refused 127.0.0.1: 421 4.7.0 Too many connections from your address")
    )


def _greets(port: int) -> bool:
    with Raw(port) as conn:
        return conn.reply().startswith(b"220")


def test_messages_per_connection(make_server):
    server = make_server(max_messages_per_connection="2")
    with Raw(server.port).hello() as conn:
        for _ in range(2):
            transaction(conn)
            conn.send(b"Subject: m\r\n\r\nx\r\n.\r\n")
            assert conn.reply().startswith(b"250")
        assert conn.cmd(b"MAIL FROM:<s@sender.test>") == b"421 4.7.0 MAIL sent too many times\r\n"
        assert conn.closed()


def test_bad_and_unknown_commands_close_with_421(make_server):
    server = make_server(max_errors="4")
    with Raw(server.port).hello() as conn:
        for reply in (
            conn.cmd(b"MAIL FROM:<>>"),
            conn.cmd(b"RCPT TO:<a@example.com>"),
            conn.cmd(b"DATA"),
        ):
            assert reply[:1] == b"5"
        conn.send(b"MAIL FROM:<bad address\r\n")
        assert conn.reply()[:1] == b"5"
        assert conn.reply() == b"421 4.7.0 Too many errors, closing connection\r\n"
        assert conn.closed()


def test_unknown_commands_and_spinning_close_with_421(make_server):
    server = make_server()
    with Raw(server.port).hello() as conn:
        for _ in range(4):
            assert conn.cmd(b"XYZZY").startswith(b"500")
        assert conn.cmd(b"XYZZY") == (
            b"421 4.7.0 Too many unrecognized commands, closing connection\r\n"
        )
        assert conn.closed()
    with Raw(server.port).hello() as conn:  # commands that go nowhere: NOOP spinning
        replies = [conn.cmd(b"NOOP") for _ in range(21)]
        assert replies[-1] == b"421 4.7.0 NOOP sent too many times\r\n"
        assert conn.closed()


def test_command_line_over_1000_octets(make_server):
    server = make_server()
    with Raw(server.port).hello() as conn:
        assert conn.cmd(b"NOOP " + b"x" * 993) == b"250 OK\r\n"  # 1000 octets with CRLF
        assert conn.cmd(b"NOOP " + b"x" * 994) == b"500 5.5.2 Line too long\r\n"
        assert conn.cmd(b"NOOP " + b"x" * 1100) == b"500 5.5.2 Line too long\r\n"
        conn.send(b"MAIL FROM:<" + b"a" * 1_000_000)  # 1 MB without a line end
        conn.send(b">\r\n")
        assert conn.reply() == b"500 5.5.2 Line too long\r\n"
        assert conn.cmd(b"RSET").startswith(b"250")  # still in sync


def test_long_data_lines_stored_intact(make_server, database_url):
    server = make_server()
    body = b"Subject: long\r\n\r\n" + b"L" * 200_000 + b"\r\n.leading\r\n"
    with Raw(server.port).hello() as conn:
        transaction(conn)
        conn.send(body.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        message_id = queued_id(conn.reply())
    rows = eventually(
        lambda: query(database_url, "SELECT raw FROM raw_messages WHERE id = $1::uuid", message_id)
    )
    assert as_sent(rows[0][0]) == body


def test_idle_data_and_session_deadlines(make_server):
    server = make_server(smtp_timeout="1", data_timeout="2", session_timeout="3")
    with Raw(server.port).hello() as idle:
        started = time.monotonic()
        assert idle.closed()
        # Not before the timeout (a busy machine may only make it later).
        assert time.monotonic() - started > 0.8
    with Raw(server.port).hello() as slow_data:
        transaction(slow_data)
        started = time.monotonic()
        with pytest.raises(OSError):
            for _ in range(50):  # a byte every 0.2 s: never idle, but too slow
                slow_data.send(b"x")
                time.sleep(0.2)
        # (the reply was sent before the close)
    server.wait_for_log(re.escape("DATA time limit"))
    with Raw(server.port).hello() as chatty:
        started = time.monotonic()
        while time.monotonic() - started < 60:  # a bound on the loop, not a verdict
            reply = chatty.cmd(b"RSET")
            if not reply.startswith(b"250"):
                break
            time.sleep(0.5)
        assert reply == b"421 4.4.2 Session time limit reached, closing connection\r\n"
        assert time.monotonic() - started > 2.5  # not before the 3 s limit


SMUGGLING = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\n.\r"]


@pytest.mark.parametrize("dot", SMUGGLING, ids=[repr(s) for s in SMUGGLING])
def test_smuggling_sequences_never_end_data(make_server, database_url, dot):
    server = make_server()
    smuggled = (
        b"Subject: outer\r\n\r\nbefore" + dot + b"MAIL FROM:<evil@sender.test>\r\n"
        b"RCPT TO:<victim@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n"
    )
    with Raw(server.port).hello() as conn:
        transaction(conn)
        conn.send(smuggled + b".\r\n")
        reply = conn.reply()
        assert reply.startswith(b"250 2.0.0"), reply
        # One 250, then 221: a smuggled second transaction would have put its
        # own replies (250, 250, 354, 250) before the 221.
        assert conn.cmd(b"QUIT").startswith(b"221")
    rows = query(
        database_url, "SELECT r.raw, e.subject FROM raw_messages r JOIN emails e ON e.raw_id = r.id"
    )
    assert len(rows) == 1 and rows[0]["subject"] == "outer"
    # What was sent, after RFC 5321 dot-unstuffing of CRLF-delimited lines.
    assert as_sent(rows[0]["raw"]) == smuggled.replace(b"\r\n.", b"\r\n")


def test_empty_message_is_one_dot(make_server, database_url):
    server = make_server()
    with Raw(server.port).hello() as conn:
        transaction(conn)
        conn.send(b".\r\n")
        assert conn.reply().startswith(b"250")
    rows = eventually(lambda: query(database_url, "SELECT raw FROM raw_messages"))
    assert as_sent(rows[0][0]) == b""


@pytest.mark.parametrize(
    "line, reply",
    [
        (b"MAIL FROM:<not an address>", b"501 5.1.7 Bad sender address syntax\r\n"),
        (
            b"MAIL FROM:<a@b>c>",
            b"501 5.5.4 Syntax: MAIL FROM: <address> [SP <mail-parameters>]\r\n",
        ),
        (b"MAIL FROM:<a@b@c>", b"501 5.1.3 Bad address syntax\r\n"),
        (b"MAIL FROM:<no-domain>", b"501 5.1.7 Bad sender address syntax\r\n"),
        (b"MAIL FROM:<" + b"a" * 65 + b"@sender.test>", b"501 5.5.4 Address too long\r\n"),
        (b"MAIL FROM:<a@" + b"b" * 250 + b".test>", b"501 5.5.4 Address too long\r\n"),
        (
            b"MAIL FROM:<a@sender.test> FOO=bar",
            b"555 5.5.4 MAIL FROM parameters not recognized or not implemented\r\n",
        ),
        (b'MAIL FROM:<"quoted local"@sender.test>', b"250 2.1.0 OK\r\n"),
        (b"MAIL FROM:<>", b"250 2.1.0 OK\r\n"),
    ],
)
def test_sender_syntax(make_server, line, reply):
    server = make_server()
    with Raw(server.port).hello() as conn:
        assert conn.cmd(line) == reply
        assert conn.cmd(b"RSET").startswith(b"250")


@pytest.mark.parametrize(
    "rcpt, reply",
    [
        (b"<garbage", b"501 5.1.3 Bad recipient address syntax\r\n"),
        (b"<a@b@c>", b"501 5.1.3 Bad address syntax\r\n"),
        (b"<postmaster>", b"250 2.1.5 OK\r\n"),  # RFC 5321 4.5.1: MUST be accepted
        (b"<PostMaster>", b"250 2.1.5 OK\r\n"),
        (b"<nobody>", b"501 5.1.3 Bad recipient address syntax\r\n"),
        (b"<u@[127.0.0.1]>", b"550 5.7.1 Domain not allowed\r\n"),  # IP literal: never ours
        (b"<u@elsewhere.test>", b"550 5.7.1 Domain not allowed\r\n"),  # no relay, ever
        (b'<"a b"@example.com>', b"250 2.1.5 OK\r\n"),
        (b"<@relay.test,@other.test:u@example.com>", b"250 2.1.5 OK\r\n"),  # route ignored
        (
            b"<u@example.com> NOTIFY=NEVER",
            b"555 5.5.4 RCPT TO parameters not recognized or not implemented\r\n",
        ),
    ],
)
def test_recipient_syntax(make_server, rcpt, reply):
    server = make_server()
    with Raw(server.port).hello() as conn:
        assert conn.cmd(b"MAIL FROM:<s@sender.test>").startswith(b"250")
        assert conn.cmd(b"RCPT TO:" + rcpt) == reply


def still_open(conn: Raw) -> bool:
    """The server has not closed `conn` yet (nothing to read, so no EOF either)."""
    readable, _, _ = select.select([conn.sock], [], [], 0)
    return not readable


def test_slowloris_cut_while_good_client_is_served(make_server):
    server = make_server(smtp_timeout="2", max_connections_per_ip="1000")
    slow = []
    for _ in range(200):
        conn = Raw(server.port, timeout=15)
        assert conn.reply().startswith(b"220")
        slow.append(conn)
    stop = threading.Event()

    def drip() -> None:  # a byte every second per connection, never a whole line
        while not stop.is_set():
            for conn in slow:
                try:
                    conn.send(b"N")
                except OSError:
                    pass
            time.sleep(1)

    dripper = threading.Thread(target=drip)
    dripper.start()
    try:
        with Raw(server.port).hello() as good:
            transaction(good)
            good.send(b"Subject: good\r\n\r\nx\r\n.\r\n")
            assert good.reply().startswith(b"250")
        # Served while the slow connections still held their slots.
        assert sum(still_open(conn) for conn in slow) > 100
        assert all(conn.closed() for conn in slow)  # each cut by SMTP_TIMEOUT
    finally:
        stop.set()
        dripper.join()
        for conn in slow:
            conn.close()


def test_flood_and_garbage_sessions(make_server):
    server = make_server(max_connections_per_ip="2000", max_connections="2000")
    assert server.process is not None
    before = rss_kib(server.process.pid)
    for _ in range(5000):  # open and drop at once
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
    garbage = []
    rng = random.Random(7)
    for _ in range(500):
        conn = Raw(server.port, timeout=15)
        garbage.append(conn)
    for conn in garbage:
        try:
            conn.send(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000))) + b"\r\n")
        except OSError:
            pass
    with Raw(server.port).hello() as good:  # a normal client is served meanwhile
        transaction(good)
        good.send(b"Subject: good\r\n\r\nx\r\n.\r\n")
        assert good.reply().startswith(b"250")
    peak = rss_kib(server.process.pid)
    for conn in garbage:
        conn.close()
    assert server.process.poll() is None
    print(f"flood: RSS {before // 1024} MiB before, {peak // 1024} MiB with 500 garbage sessions")
    assert peak - before < 150 * 1024


commands = st.sampled_from(
    [
        b"EHLO x",
        b"HELO x",
        b"MAIL FROM:<a@b.test>",
        b"MAIL FROM:<>",
        b"RCPT TO:<u@example.com>",
        b"RCPT TO:<u@nope.test>",
        b"DATA",
        b"RSET",
        b"NOOP",
        b"QUIT",
        b"VRFY a",
        b"HELP",
        b"AUTH",
        b"STARTTLS",
        b"BDAT 10",
        b".",
        b"MAIL FROM:<a@b.test> SIZE=99999999999",
        b"",
    ]
)
junk = st.binary(max_size=300)
line = st.one_of(
    commands, junk, st.builds(lambda c, j: c + j, commands, junk), st.just(b"X" * 5000)
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(stream=st.lists(line, max_size=25), separator=st.sampled_from([b"\r\n", b"\n", b"\r"]))
def fuzz_one(port: int, stream: list[bytes], separator: bytes) -> None:
    with Raw(port, timeout=10) as conn:
        assert conn.reply().startswith(b"220")
        conn.send(separator.join(stream) + b"\r\n.\r\nQUIT\r\n")
        conn.sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # every reply well-formed, then EOF: no stuck session
            try:
                line = conn.reader.readline()
            except ConnectionResetError:
                return
            if not line:
                return
            assert REPLY_LINE.match(line), line
        raise AssertionError("session still open 10 s after QUIT")


def test_fuzzed_command_streams(make_server):
    server = make_server(max_connections_per_ip="1000")
    fuzz_one(server.port)
    assert server.process is not None and server.process.poll() is None
    with Raw(server.port).hello() as conn:
        assert conn.cmd(b"NOOP").startswith(b"250")
    assert "Traceback" not in server.log and "unexpected error" not in server.log


def test_corpus_in_random_tcp_chunks(make_server, database_url):
    server = make_server(max_message_size=str(8 * 1024 * 1024), max_messages_per_connection="2000")
    rng = random.Random(1234)
    sent = {}
    with Raw(server.port, timeout=60).hello() as conn:
        for path in corpus_files():
            wire = normalised(path.read_bytes())
            transaction(conn, b"chunks@example.com")
            data = (
                b"." + wire.replace(b"\r\n.", b"\r\n..")
                if wire.startswith(b".")
                else (wire.replace(b"\r\n.", b"\r\n..")) + b".\r\n"
            )
            position = 0
            while position < len(data):
                size = rng.choice([1, 2, 3, 5, 64, 1000, 4096, 70000])
                conn.send(data[position : position + size])
                position += size
                if rng.random() < 0.02:
                    time.sleep(0.001)  # let the server read a partial chunk
            reply = conn.reply()
            assert reply.startswith(b"250"), (path, reply)
            sent[queued_id(reply)] = wire
    rows = eventually(
        lambda: (
            (r := query(database_url, "SELECT id::text, raw FROM raw_messages"))
            and len(r) == len(sent)
            and r
        ),
        timeout=60,
    )
    assert all(sent[row["id"]] == as_sent(row["raw"]) for row in rows)
    print(f"corpus in random chunks: {len(rows)} stored raw-identical")
