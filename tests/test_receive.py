"""The receive path end to end: real server, real SMTP clients, real PostgreSQL."""

from __future__ import annotations

import email
import email.policy
import smtplib
import socket
import subprocess
import threading
import time

import pytest

from .helpers import as_sent, corpus_files, normalised, query, queued_id


def send(port: int, raw: bytes, rcpts: list[str], sender: str = "s@sender.test") -> str:
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.ehlo("client.test")
        code, _ = client.mail(sender)
        assert code == 250
        for rcpt in rcpts:
            assert client.rcpt(rcpt)[0] == 250
        code, reply = client.data(raw)
        assert code == 250, reply
        return queued_id(reply)


def wait_rows(url: str, sql: str, expected: int, timeout: float = 10) -> list:
    deadline = time.monotonic() + timeout
    while True:
        rows = query(url, sql)
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_greeting_and_ehlo_keywords(make_server):
    server = make_server(max_message_size="1000000")
    with smtplib.SMTP("127.0.0.1", server.port) as client:
        code, text = client.ehlo("client.test")
        assert code == 250
        keywords = set(client.esmtp_features)
        assert {"size", "8bitmime", "pipelining", "smtputf8", "enhancedstatuscodes"} <= keywords
        assert client.esmtp_features["size"] == "1000000"
        assert "starttls" not in keywords  # no certificate configured
    sock = socket.create_connection(("127.0.0.1", server.port))
    assert sock.recv(100) == b"220 mx.test ESMTP\r\n"
    sock.close()


def test_one_data_many_recipients_one_refused(make_server, database_url):
    server = make_server()
    with smtplib.SMTP("127.0.0.1", server.port) as client:
        client.ehlo("client.test")
        client.mail("s@sender.test")
        assert client.rcpt("A@Example.com")[0] == 250
        assert client.rcpt("b@deep.sub.example.org")[0] == 250
        assert client.rcpt("c@example.net") == (550, b"5.7.1 Domain not allowed")
        code, reply = client.data(b"Subject: three\r\n\r\nhello\r\n")
        assert code == 250
    message_id = queued_id(reply)
    rows = wait_rows(database_url, "SELECT mailbox_owner, raw_id, subject FROM emails", 2)
    assert sorted(r["mailbox_owner"] for r in rows) == ["a@example.com", "b@deep.sub.example.org"]
    assert {str(r["raw_id"]) for r in rows} == {message_id}
    assert query(database_url, "SELECT count(*) FROM raw_messages")[0][0] == 1
    inbox = query(database_url, "SELECT email_address FROM inbox ORDER BY 1")
    assert [r[0] for r in inbox] == ["a@example.com", "b@deep.sub.example.org"]


def test_swaks_real_client(make_server, database_url):
    server = make_server()
    result = subprocess.run(
        [
            "swaks",
            "--server",
            f"127.0.0.1:{server.port}",
            "--to",
            "swaks@example.com",
            "--from",
            "x@sender.test",
            "--header",
            "Subject: via swaks",
            "--pipeline",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = wait_rows(database_url, "SELECT subject, from_addr, helo FROM emails", 1)
    assert rows[0]["subject"] == "via swaks" and rows[0]["from_addr"] == "x@sender.test"


def test_pipelined_session_in_one_write(make_server, database_url):
    server = make_server()
    script = (
        b"EHLO pipe.test\r\nMAIL FROM:<p@sender.test>\r\nRCPT TO:<one@example.com>\r\n"
        b"RCPT TO:<nope@elsewhere.test>\r\nDATA\r\n"
    )
    body = b"Subject: piped\r\n\r\n..leading dot\r\nline\r\n.\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        with sock.makefile("rb") as reader:
            assert reader.readline().startswith(b"220")
            sock.sendall(script)
            replies = [reader.readline()]
            while not replies[-1].startswith(b"250 "):  # the EHLO reply's last line
                replies.append(reader.readline())
            replies += [reader.readline() for _ in range(3)]  # MAIL, RCPT, RCPT
            data_reply = reader.readline()
            assert data_reply.startswith(b"354"), (replies, data_reply)
            sock.sendall(body + b"MAIL FROM:<q@sender.test>\r\nRSET\r\nQUIT\r\n")
            assert reader.readline().startswith(b"250 2.0.0 OK: queued as")
            assert reader.readline().startswith(b"250")
            assert reader.readline().startswith(b"250")
            assert reader.readline().startswith(b"221")
    assert b"550 5.7.1 Domain not allowed\r\n" in replies
    rows = wait_rows(database_url, "SELECT raw FROM raw_messages", 1)
    assert as_sent(rows[0]["raw"]) == b"Subject: piped\r\n\r\n.leading dot\r\nline\r\n"


def test_8bitmime_and_smtputf8_address(make_server, database_url):
    server = make_server()
    body = "Subject: ünïcödé\r\nFrom: Jörg <jörg@sender.test>\r\n\r\nGrüße 8-bit body\r\n"
    with smtplib.SMTP("127.0.0.1", server.port) as client:
        client.ehlo("client.test")
        assert client.mail("jörg@sender.test", ["SMTPUTF8", "BODY=8BITMIME"])[0] == 250
        assert client.rcpt("Ünser@例え.jp")[0] == 250
        code, _ = client.data(body.encode())
        assert code == 250
    rows = wait_rows(database_url, "SELECT mailbox_owner, subject, body, from_addr FROM emails", 1)
    assert rows[0]["mailbox_owner"] == "ünser@xn--r8jz45g.jp"  # domain in punycode
    assert rows[0]["subject"] == "ünïcödé"
    assert rows[0]["body"].startswith("Grüße")
    assert rows[0]["from_addr"] == "jörg@sender.test"


@pytest.mark.parametrize(
    "raw",
    [
        b"Subject: nul\x00here\r\nX-Bad: \xff\xfe\xc3\r\n\r\nbody \x00 with nul and \xff\r\n",
        b"From: a@b.test\r\n\r\nno subject at all\r\n",
        b"Subject: empty body\r\n\r\n",
        b"",
    ],
    ids=["nul-and-invalid-utf8", "no-subject", "empty-body", "empty-message"],
)
def test_odd_messages_are_stored_raw_intact(make_server, database_url, raw):
    server = make_server()
    message_id = send(server.port, raw, ["odd@example.com"])
    rows = wait_rows(
        database_url,
        "SELECT e.subject, e.body, r.raw FROM emails e JOIN raw_messages r ON r.id = e.raw_id",
        1,
    )
    assert rows, server.log
    assert as_sent(rows[0]["raw"]) == normalised(raw)
    for text in (rows[0]["subject"], rows[0]["body"]):
        assert "\x00" not in text
    assert message_id


def test_durable_mode_row_is_committed_before_250(make_server, database_url):
    server = make_server(ack_mode="durable")
    for n in range(5):
        message_id = send(server.port, f"Subject: d{n}\r\n\r\nx\r\n".encode(), ["d@example.com"])
        # No waiting: the row must already be visible when the 250 arrives.
        rows = query(database_url, "SELECT subject FROM emails WHERE raw_id = $1::uuid", message_id)
        assert [r["subject"] for r in rows] == [f"d{n}"]


def test_instant_mode_250_then_row(make_server, database_url):
    server = make_server(ack_mode="instant")
    message_id = send(server.port, b"Subject: i\r\n\r\nx\r\n", ["i@example.com"])
    rows = wait_rows(database_url, f"SELECT 1 FROM emails WHERE raw_id = '{message_id}'", 1)
    assert len(rows) == 1


def test_queue_full_gives_451_and_loses_nothing(make_server, database_url):
    server = make_server(queue_size="1", ack_mode="instant")
    import asyncio

    import asyncpg

    lock_held = threading.Event()
    release = threading.Event()

    def hold_lock() -> None:
        async def go() -> None:
            conn = await asyncpg.connect(database_url)
            async with conn.transaction():
                await conn.execute("LOCK TABLE emails IN ACCESS EXCLUSIVE MODE")
                lock_held.set()
                await asyncio.to_thread(release.wait, 30)
            await conn.close()

        asyncio.run(go())

    locker = threading.Thread(target=hold_lock)
    locker.start()
    assert lock_held.wait(10)
    accepted, refused = [], 0
    with smtplib.SMTP("127.0.0.1", server.port) as client:
        client.ehlo("client.test")
        for n in range(6):
            client.mail("s@sender.test")
            client.rcpt("q@example.com")
            code, reply = client.data(f"Subject: q{n}\r\n\r\nx\r\n".encode())
            if code == 250:
                accepted.append(queued_id(reply))
            else:
                assert (code, reply) == (451, b"4.3.0 Mail queue full - please retry later")
                refused += 1
            time.sleep(0.1)
    release.set()
    locker.join(10)
    assert refused >= 3 and 1 <= len(accepted) <= 3
    rows = wait_rows(database_url, "SELECT raw_id::text FROM emails", len(accepted))
    assert sorted(r[0] for r in rows) == sorted(accepted)


def test_sigterm_with_200_in_flight_loses_nothing(make_server, database_url):
    server = make_server()
    accepted: list[str] = []
    lock = threading.Lock()

    def client(worker: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as smtp:
                smtp.ehlo("load.test")
                for n in range(20):
                    smtp.mail("s@sender.test")
                    smtp.rcpt(f"w{worker}@example.com")
                    code, reply = smtp.data(
                        f"Subject: {worker}-{n}\r\n\r\n{'x' * 3000}\r\n".encode()
                    )
                    if code == 250:
                        with lock:
                            accepted.append(queued_id(reply))
        except (smtplib.SMTPException, OSError):
            pass  # the server closed the session: expected once it stops

    threads = [threading.Thread(target=client, args=(w,)) for w in range(10)]
    for thread in threads:
        thread.start()
    while len(accepted) < 60:
        time.sleep(0.005)
    assert server.stop() == 0
    for thread in threads:
        thread.join(30)
    stored = {r[0] for r in query(database_url, "SELECT raw_id::text FROM emails")}
    assert set(accepted) <= stored, f"lost {len(set(accepted) - stored)} of {len(accepted)}"
    assert "[service] stopped" in server.log


def test_corpus_every_message_stored_raw_intact(make_server, database_url):
    server = make_server(max_message_size=str(8 * 1024 * 1024), max_messages_per_connection="2000")
    files = corpus_files()
    assert len(files) == 1368
    sent: dict[str, bytes] = {}
    subjects: dict[str, str] = {}
    long_lines = 0
    with smtplib.SMTP("127.0.0.1", server.port, timeout=60) as client:
        client.ehlo("corpus.test")
        for path in files:
            raw = path.read_bytes()
            wire = normalised(raw)
            # Over 1000 octets with the CRLF (RFC 5321's limit for a text line).
            long_lines += any(len(line) > 998 for line in wire.split(b"\r\n"))
            client.mail("c@sender.test")
            client.rcpt("corpus@example.com")
            code, reply = client.data(wire)  # smtplib dot-stuffs, sends bytes as they are
            assert code == 250, (path, reply)
            message_id = queued_id(reply)
            sent[message_id] = wire
            subject = simple_subject(raw)
            if subject is not None:
                subjects[message_id] = subject
    rows = wait_rows(
        database_url,
        "SELECT r.id::text, r.raw, e.subject FROM raw_messages r JOIN emails e ON e.raw_id = r.id",
        len(sent),
        timeout=120,
    )
    stored = {r["id"]: (r["raw"], r["subject"]) for r in rows}
    assert len(stored) == len(sent)
    assert all(as_sent(stored[key][0]) == wire for key, wire in sent.items())
    mismatched = [
        key for key, subject in subjects.items() if stored[key][1].split() != subject.split()
    ]
    assert not mismatched, [(subjects[k], stored[k][1]) for k in mismatched[:5]]
    print(
        f"corpus: {len(stored)}/{len(files)} stored raw-identical; "
        f"{long_lines} with lines over 1000 octets on the wire; {len(subjects)} subjects compared"
    )
    assert long_lines >= 15


def simple_subject(raw: bytes) -> str | None:
    """The stdlib's decoded Subject when the header is plain ASCII and one line."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    values = message.get_all("subject") or []
    if len(values) != 1:
        return None
    header = raw.split(b"\n\n")[0].split(b"\r\n\r\n")[0].splitlines()
    found = [n for n, line in enumerate(header) if line.lower().startswith(b"subject:")]
    if len(found) != 1:
        return None
    line = header[found[0]]
    folded = found[0] + 1 < len(header) and header[found[0] + 1][:1] in (b" ", b"\t")
    if folded or not line.isascii() or b"=?" in line:
        return None
    try:
        return str(values[0])
    except Exception:
        return None
