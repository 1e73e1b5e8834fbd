"""Review (issue 21 item 4): a row lock on private_email must not stall mail.

Every batch stamps private_email.last_updated_at in the statement that
stores the mail. A website holding one private row in a long transaction
(SELECT ... FOR UPDATE, an UPDATE not yet committed) made that statement
wait for it: every message, to any address, got 451 and none was stored.

The stamp is best effort: a row someone else holds is skipped, the mail is
stored, and the next message stamps the row once it is free.

A lock on the whole table (ALTER TABLE, VACUUM FULL, LOCK TABLE: an
operator's maintenance) still held the statement, SKIP LOCKED or not:
every message got 451 (found by review r21). The stamp is now a statement
of its own after the commit, waiting at most db.LOCK_TIMEOUT.
(before the batch's 250s).
"""

from __future__ import annotations

from .helpers import query
from .test_promises import holding, send

VIP = "vip@example.com"


def stamp(database_url: str) -> object:
    return query(database_url, "SELECT last_updated_at FROM private_email WHERE email = $1", VIP)[
        0
    ][0]


def owners(database_url: str) -> list[str]:
    return sorted(r[0] for r in query(database_url, "SELECT mailbox_owner FROM emails"))


def test_a_locked_private_row_does_not_stop_mail(make_server, database_url):
    server = make_server(start=False, ack_mode="durable", durable_timeout="5")
    query(database_url, "INSERT INTO private_email (email) VALUES ($1)", VIP)
    server.start()
    with holding(database_url, f"SELECT 1 FROM private_email WHERE email = '{VIP}' FOR UPDATE"):
        assert send(server.port, "to the vip", rcpt=VIP)[0] == 250
        assert send(server.port, "to someone else", rcpt="other@example.com")[0] == 250
        assert owners(database_url) == ["other@example.com", VIP]
    assert stamp(database_url) is None  # skipped while the website held the row
    assert send(server.port, "again", rcpt=VIP)[0] == 250
    assert stamp(database_url) is not None  # the row is free: stamped with the mail


def test_a_locked_private_table_does_not_stop_mail(make_server, database_url):
    server = make_server(start=False, ack_mode="durable", durable_timeout="5")
    query(database_url, "INSERT INTO private_email (email) VALUES ($1)", VIP)
    server.start()
    with holding(database_url, "LOCK TABLE private_email IN ACCESS EXCLUSIVE MODE"):
        assert send(server.port, "to the vip", rcpt=VIP)[0] == 250
        assert send(server.port, "to someone else", rcpt="other@example.com")[0] == 250
        assert owners(database_url) == ["other@example.com", VIP]
    assert stamp(database_url) is None  # skipped while the table was locked
    assert send(server.port, "again", rcpt=VIP)[0] == 250
    assert stamp(database_url) is not None  # the table is free: stamped with the mail
