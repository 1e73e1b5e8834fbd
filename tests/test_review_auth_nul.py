"""Review: a NUL byte in a DKIM-Signature tag (a=, i=) of the message body
reaches the auth_results text column. PostgreSQL refuses the row after the
250 was given: the message ends in spool/dead, never in `emails`.

Claims broken: "nothing acknowledged is later refused by PostgreSQL",
"Text columns never get NUL" (DESIGN.md), "A 250 is a promise" (durable).
"""

from __future__ import annotations

import smtplib
import time

import pytest

from .helpers import query, queued_id


@pytest.mark.parametrize("tag", [b"a=rsa-sha256\x00x", b"a=rsa-sha256; i=@ex\x00ample.com"])
def test_nul_in_dkim_tag_is_stored_after_250(make_server, database_url, tmp_path, tag):
    server = make_server()  # durable, AUTH_CHECKS=record (defaults)
    raw = (
        b"DKIM-Signature: v=1; " + tag + b"; d=example.com; s=sel; c=relaxed/relaxed;"
        b" h=from; bh=AAAA; b=AAAA\r\n"
        b"From: a@example.com\r\nTo: box@example.com\r\nSubject: nul-dkim\r\n\r\nhello\r\n"
    )
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
        client.ehlo("client.test")
        client.mail("a@example.com")
        client.rcpt("box@example.com")
        code, reply = client.data(raw)
    assert code == 250, reply  # the promise is given...
    message_id = queued_id(reply)
    time.sleep(1)
    rows = query(database_url, "SELECT id FROM emails WHERE raw_id = $1::uuid", message_id)
    dead = list((tmp_path / "spool" / "dead").glob("*.msg"))
    # ...and must be kept in the database, not set aside as a dead letter.
    assert rows, f"acknowledged {message_id} not stored; dead letters: {dead}\n{server.log[-2000:]}"
