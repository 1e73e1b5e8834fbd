"""Resend detection (app/db_dedup.py): a message its sender sends again
after a session cut right after our 250 (the sender never confirmed it saw
it), to the same host or another, is stored once; different bytes are not a
resend, nor are the same bytes sent again after the client went on (its next
command on that session confirms the 250: a new message)."""

from __future__ import annotations

import smtplib
import socket
import threading
import uuid

import pytest

from app import db_dedup
from app.model import Envelope

from .helpers import eventually, query, script

MESSAGE = (
    b"From: a@sender.test\r\nTo: box@example.com\r\nSubject: resend\r\n"
    b"Message-ID: <%s@sender.test>\r\n\r\n%s\r\n"
)


def message(mid: str, body: str = "one") -> bytes:
    return MESSAGE % (mid.encode(), body.encode())


def send(
    port: int, raw: bytes, rcpts: tuple[str, ...] = ("box@example.com",), quit: bool = False
) -> None:
    """Send `raw`; then QUIT, or (by default) cut the session right after
    the 250: the server cannot tell that the client saw it (a resend)."""
    client = smtplib.SMTP("127.0.0.1", port, timeout=30)
    try:
        client.ehlo("client.test")
        assert client.mail("a@sender.test")[0] == 250
        for rcpt in rcpts:
            assert client.rcpt(rcpt)[0] == 250
        code, reply = client.data(raw)
        assert code == 250, reply  # a resend is answered 250 too: its first copy is stored
        if quit:
            client.quit()
    finally:
        client.close()  # closes the socket only: no QUIT


def send_cut(port: int, raw: bytes, pipelined: bytes = b"") -> None:
    """On a raw socket: the message, our 250 read, then the socket closed (no
    further command: the MTA's connection died after our reply); `pipelined`
    goes in the same write as the message's end, before the 250 is seen."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        replies = sock.makefile("rb")

        def say(line: bytes, code: bytes) -> None:
            sock.sendall(line + b"\r\n")
            reply = replies.readline()
            while reply[3:4] == b"-":
                reply = replies.readline()
            assert reply[:3] == code, reply

        assert replies.readline()[:3] == b"220"
        say(b"EHLO client.test", b"250")
        say(b"MAIL FROM:<a@sender.test>", b"250")
        say(b"RCPT TO:<box@example.com>", b"250")
        say(b"DATA", b"354")
        say(raw.replace(b"\r\n.", b"\r\n..") + b"." + pipelined, b"250")


def rows(url: str, owner: str = "box@example.com") -> list[str]:
    found = query(url, "SELECT body FROM emails WHERE mailbox_owner = $1 ORDER BY body", owner)
    return [r["body"].strip() for r in found]


def raw_count(url: str) -> int:
    return int(query(url, "SELECT count(*) FROM raw_messages")[0][0])


def test_same_message_to_two_hosts_is_stored_once(make_server, database_url):
    first, second = make_server(), make_server()
    mid = uuid.uuid4().hex
    send(first.port, message(mid))  # cut after the 250: the sender may not have seen it
    send(second.port, message(mid))  # the MTA's resend after an ambiguous failure
    send(first.port, message(mid))  # and again to the first host
    assert rows(database_url) == ["one"]
    assert raw_count(database_url) == 1  # the copies' raw bytes are not kept either


def test_same_message_id_other_bytes_or_no_id_is_stored_twice(make_server, database_url):
    first, second = make_server(), make_server()
    mid = uuid.uuid4().hex
    send(first.port, message(mid, "one"))
    send(second.port, message(mid, "two"))  # same Message-ID, different bytes: a new message
    plain = b"From: a@sender.test\r\nSubject: no id\r\n\r\nthree\r\n"
    send(first.port, plain)
    send(second.port, plain)  # no Message-ID: no key, never taken for a resend
    assert rows(database_url) == ["one", "three", "three", "two"]


def test_recipients_are_keyed_one_by_one(make_server, database_url):
    first, second = make_server(), make_server()
    raw = message(uuid.uuid4().hex)
    send(first.port, raw, ("box@example.com",))
    # The resend carries that recipient and a new one: only the new one is stored.
    send(second.port, raw, ("box@example.com", "other@example.com"))
    assert rows(database_url) == ["one"]
    assert rows(database_url, "other@example.com") == ["one"]


def test_simultaneous_copies_on_two_hosts_make_one_row(make_server, database_url):
    hosts = [make_server(), make_server()]
    raws = [message(uuid.uuid4().hex, f"m{n}") for n in range(20)]

    def blast(port: int) -> None:
        for raw in raws:
            send(port, raw)

    threads = [threading.Thread(target=blast, args=(h.port,)) for h in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(rows(database_url)) == sorted(f"m{n}" for n in range(20))


def test_window_off_stores_every_copy(make_server, database_url):
    server = make_server(dedup_window="0")
    raw = message(uuid.uuid4().hex)
    send(server.port, raw)
    send(server.port, raw)
    assert eventually(lambda: rows(database_url) == ["one", "one"])


def test_keys_past_the_window_are_taken_over_and_pruned(make_server, database_url):
    server = make_server(dedup_window="1")
    raw = message(uuid.uuid4().hex)
    send(server.port, raw)
    query(database_url, "UPDATE mail_dedup SET seen_at = seen_at - interval '1 hour'")
    send(server.port, raw)  # its first copy is older than the window: stored again
    assert rows(database_url) == ["one", "one"]
    query(database_url, "UPDATE mail_dedup SET seen_at = seen_at - interval '1 hour'")
    # The prune runs every DEDUP_WINDOW seconds (here 1): every key is past it.
    eventually(lambda: not query(database_url, "SELECT 1 FROM mail_dedup"), timeout=30)


def send_twice(client: smtplib.SMTP, raw: bytes) -> None:
    """The same bytes twice on one session: the second MAIL says the client saw the first 250."""
    for _ in range(2):
        assert client.mail("a@sender.test")[0] == 250
        assert client.rcpt("box@example.com")[0] == 250
        assert client.data(raw)[0] == 250


def test_same_bytes_twice_on_one_session_are_two_messages(make_server, database_url):
    server = make_server()
    raw = message(uuid.uuid4().hex)
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
        client.ehlo("client.test")
        send_twice(client, raw)
    assert rows(database_url) == ["one", "one"]


def test_same_bytes_on_two_sessions_ended_with_quit_are_two_messages(make_server, database_url):
    server = make_server()
    raw = message(uuid.uuid4().hex)
    send(server.port, raw, quit=True)
    send(server.port, raw, quit=True)
    assert rows(database_url) == ["one", "one"]
    # The second's QUIT is marked too, with no batch to carry it (IDLE_PROBE).
    confirmed = "SELECT confirmed FROM mail_dedup"
    eventually(lambda: [r[0] for r in query(database_url, confirmed)] == [True], timeout=30)


@pytest.mark.parametrize("resend_to", ["same host", "second host"])
def test_session_cut_after_250_then_resent_is_one_row(make_server, database_url, resend_to):
    first = make_server()
    second = first if resend_to == "same host" else make_server()
    raw = message(uuid.uuid4().hex)
    send_cut(first.port, raw)  # the 250 may have been lost: unconfirmed
    send(second.port, raw, quit=True)  # the MTA's resend: a copy, not stored
    assert rows(database_url) == ["one"]
    # That resend's 250 was seen (QUIT): the same bytes once more are a new message.
    send(second.port, raw)
    assert rows(database_url) == ["one", "one"]


def test_command_pipelined_behind_the_end_confirms_nothing(make_server, database_url):
    server = make_server()
    raw = message(uuid.uuid4().hex)
    # The QUIT was sent before the client could see the 250: not a confirmation.
    send_cut(server.port, raw, pipelined=b"\r\nQUIT")
    send(server.port, raw, quit=True)  # so this is a resend: not stored
    assert rows(database_url) == ["one"]


def envelope(raw: bytes, recipients: tuple[str, ...], sender: str = "a@x.test") -> Envelope:
    return Envelope.new(sender, recipients, raw, "192.0.2.1", "x.test")


def test_keys_follow_sender_recipient_message_id_and_bytes():
    raw = message("k1")
    one = db_dedup.keys(envelope(raw, ("A@Example.com", "b@example.com")))
    assert len(set(one)) == 2 and None not in one
    assert db_dedup.keys(envelope(raw, ("a@example.com",))) == one[:1]  # case of the address
    assert db_dedup.keys(envelope(raw, ("a@example.com",), "other@x.test")) != one[:1]
    assert db_dedup.keys(envelope(message("k1", "x"), ("a@example.com",))) != one[:1]
    assert db_dedup.keys(envelope(b"Subject: x\r\n\r\nMessage-ID: <a@b>\r\n", ("a@e.com",))) == [
        None
    ]
    folded = b"Message-Id:\r\n <k1@sender.test>\r\nSubject: s\r\n\r\nb\r\n"
    assert db_dedup.message_id(folded) == b"<k1@sender.test>"


# The first batch after this is armed sleeps past DURABLE_TIMEOUT: its sender
# gets 451 while the write commits, and the writer revokes it afterwards.
SLOW_ONCE = """
CREATE TABLE slow_once (armed boolean);
CREATE FUNCTION slow_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM slow_once;
    IF FOUND THEN PERFORM pg_sleep(2); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER slow_once AFTER INSERT ON raw_messages
    FOR EACH STATEMENT EXECUTE FUNCTION slow_once();
INSERT INTO slow_once VALUES (true);
"""


SLEEPING = (
    "SELECT 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND datname = current_database()"
)


def send_reply(port: int, raw: bytes) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.test")
        client.mail("a@sender.test")
        client.rcpt("box@example.com")
        return int(client.data(raw)[0])


def test_revoked_message_gives_its_key_back(make_server, database_url):
    server = make_server(durable_timeout="1")
    script(database_url, SLOW_ONCE)
    raw = message(uuid.uuid4().hex)
    assert send_reply(server.port, raw) == 451
    server.wait_for_log(r"commit wait timed out")
    eventually(lambda: not query(database_url, "SELECT 1 FROM slow_once"))  # taken
    # Committed after the 451 (it sleeps until then), then revoked: gone, its key too.
    eventually(lambda: not query(database_url, SLEEPING), timeout=30)
    eventually(lambda: not query(database_url, "SELECT 1 FROM mail_dedup"), timeout=30)
    assert rows(database_url) == []
    send(server.port, raw)  # the sender's retry is not a copy of anything stored
    assert rows(database_url) == ["one"]


def test_copy_dropped_before_the_revoke_keeps_the_first(make_server, database_url):
    first, second = make_server(durable_timeout="1"), make_server()
    script(database_url, SLOW_ONCE)
    raw = message(uuid.uuid4().hex)
    assert send_reply(first.port, raw) == 451
    # The retry reaches the second host while the first write still sleeps:
    # it waits for that transaction, finds its key taken, and stores nothing.
    send(second.port, raw)
    first.wait_for_log(r"1 messages are not revoked: a resend of theirs was dropped as a copy")
    assert rows(database_url) == ["one"]


def test_copies_in_one_batch_keep_the_first_and_rows_go_one_by_one():
    from app.model import Prepared
    from app.parse import EMPTY

    raw = message("batch")
    first = Prepared(envelope(raw, ("a@example.com", "b@example.com")), EMPTY, None)
    copy = Prepared(envelope(raw, ("b@example.com", "c@example.com")), EMPTY, None)
    wanted = db_dedup.claims([first, copy])
    assert sorted(wanted.values()) == sorted([first.envelope.id] * 2 + [copy.envelope.id])
    kept, dropped = db_dedup.kept([first, copy], set(wanted))  # every claim won
    assert dropped == 1  # b@ is the first message's
    assert [p.envelope.recipients for p in kept] == [
        ("a@example.com", "b@example.com"),
        ("c@example.com",),
    ]
    assert kept[1].envelope.row_ids == copy.envelope.row_ids[1:]
    kept, dropped = db_dedup.kept([first, copy], set())  # another host has them all
    assert (kept, dropped) == ([], 4)
    # The first one's 250 was confirmed: the second is a new message, whole,
    # and holds the key it shares.
    confirmed = {first.envelope.id}
    wanted = db_dedup.holders([first, copy], confirmed)[0]
    assert sorted(wanted.values()) == sorted([first.envelope.id] + [copy.envelope.id] * 2)
    kept, dropped = db_dedup.kept([first, copy], set(wanted), confirmed)
    assert (kept, dropped) == ([first, copy], 0)
    # Another host holds them all, unconfirmed: the first is a copy, but the
    # second's b@ row came after the first's 250 was seen: new (found by
    # review: it went too); its c@ row is the first claim of its key: a copy.
    kept, dropped = db_dedup.kept([first, copy], set(), confirmed)
    assert [p.envelope.recipients for p in kept] == [("b@example.com",)] and dropped == 3
