"""Review: README "Every refusal (policy, limits, cut sessions) is logged in one
line". The recipient limit (452 4.5.3), the size limit (552 5.3.4, at MAIL
FROM with SIZE= and after the body) and aiosmtpd's per-connection command
budget (421 "... sent too many times") are refused without any log line.
"""

from __future__ import annotations

import re

from .raw import Raw


def refusal_lines(server) -> list[str]:
    return [line for line in server.lines if re.search(r"\[smtp\] refused", line)]


def test_limit_refusals_are_logged(make_server):
    server = make_server(max_recipients="1", max_message_size="2048")
    with Raw(server.port) as conn:
        conn.hello()
        assert conn.cmd(b"MAIL FROM:<s@sender.test> SIZE=999999").startswith(b"552")
        assert conn.cmd(b"MAIL FROM:<s@sender.test>").startswith(b"250")
        assert conn.cmd(b"RCPT TO:<a@example.com>").startswith(b"250")
        assert conn.cmd(b"RCPT TO:<b@example.com>").startswith(b"452 4.5.3")
        assert conn.cmd(b"DATA").startswith(b"354")
        conn.send(b"Subject: big\r\n\r\n" + b"x" * 4000 + b"\r\n.\r\n")
        assert conn.reply().startswith(b"552 5.3.4")
    with Raw(server.port) as conn:
        conn.hello()
        for _ in range(4):  # hello() sent the first of 5
            conn.cmd(b"EHLO again.test")
        assert conn.cmd(b"EHLO again.test").startswith(b"421")
    for reply in (
        "552 5.3.4 Message too big",  # SIZE= at MAIL, and the body
        "452 4.5.3 Too many recipients",
        "421 4.7.0 EHLO sent too many times",  # aiosmtpd's command budget
    ):
        server.wait_for_log(rf"\[smtp\] refused 127\.0\.0\.1: {reply}")
    assert len([line for line in refusal_lines(server) if "552 5.3.4" in line]) == 2
