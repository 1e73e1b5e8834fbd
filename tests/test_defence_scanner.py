"""The optional spam scanner through the real server: rspamd (/checkv2) and
SpamAssassin's spamd, each run for real on a free port; score and symbols
stored, junk from SPAM_JUNK_SCORE, 554 from SPAM_REJECT_SCORE in enforce
mode; a scanner that hangs or is down gives an `unchecked` verdict after
SPAM_TIMEOUT, and the mail is stored."""

from __future__ import annotations

import pytest

from .defence_helpers import message, send, stored
from .helpers import free_port
from .scanners import SilentScanner, rspamd, spamd  # noqa: F401 (fixtures)

# rspamd and spamd both score a message without Date and Message-ID above 2
# (rspamd 3.4, spamd 2.3 behind our Received line), and one with them near 0.
BARE = message()
GOOD = (
    b"From: Alice <a@sender.test>\r\nTo: x@example.com\r\nSubject: hello\r\n"
    b"Date: Sun, 06 Dec 2026 20:00:00 +0000\r\nMessage-ID: <1@sender.test>\r\n\r\nhi\r\n"
)


@pytest.mark.parametrize("scanner", ["rspamd", "spamd"])
def test_scanner_scores_are_stored_and_mark_junk(make_server, database_url, scanner, request):
    url = request.getfixturevalue(scanner)
    server = make_server(spam_scanner=url, spam_junk_score="2", spam_timeout="20")
    _, code, reply = send(server.port, data=BARE)
    assert code == 250
    row = stored(database_url, reply)
    facts = row["verdicts"]["scanner"]
    assert facts["scanner"] == scanner and facts["score"] >= 2
    assert "MISSING_DATE" in facts["symbols"]
    assert row["junk"] is True and row["verdicts"]["reasons"][0].startswith(f"scanner: {scanner}")
    _, code, reply = send(server.port, data=GOOD)
    row = stored(database_url, reply)
    assert row["verdicts"]["scanner"]["score"] < 2 and row["junk"] is False


def test_rspamd_enforce_refuses_from_the_reject_score(make_server, database_url, rspamd):  # noqa: F811
    server = make_server(
        spam_scanner=rspamd,
        spam_checks="enforce",
        spam_junk_score="1",
        spam_reject_score="3",
        spam_timeout="20",
    )
    step, code, text = send(server.port, data=BARE)
    assert (step, code) == ("DATA", 554)
    assert text.startswith(b"5.7.1 Message refused as spam (score 3")
    _, code, reply = send(server.port, data=GOOD)
    assert code == 250


@pytest.mark.parametrize("kind", ["rspamd", "spamd"])
def test_a_hung_or_dead_scanner_stores_mail_unchecked(make_server, database_url, kind):
    hung = SilentScanner()
    try:
        server = make_server(
            spam_scanner=f"{kind}://127.0.0.1:{hung.port}", spam_timeout="1", spam_checks="enforce"
        )
        _, code, reply = send(server.port)
        assert code == 250
        assert stored(database_url, reply)["verdicts"]["scanner"] == {
            "scanner": kind,
            "unchecked": "timeout",
        }
        server.wait_for_log(rf"\[scanner\] {kind} at 127\.0\.0\.1:\d+ gave no verdict \(timeout")
    finally:
        hung.stop()
    dead = make_server(spam_scanner=f"{kind}://127.0.0.1:{free_port()}", spam_timeout="1")
    _, code, reply = send(dead.port)
    assert code == 250
    assert stored(database_url, reply)["verdicts"]["scanner"]["unchecked"] != "timeout"
