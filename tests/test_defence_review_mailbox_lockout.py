"""Review of issue 23: the rate limits count messages accepted, not what a
client names.

Before the fix every accepted MAIL and RCPT counted, so anyone could lock
others out without sending a message: RATE_PER_MAILBOX recipients a minute
kept a mailbox answering `452 4.2.2` to its real mail (a sign-up code
deferred by its MTA as long as the attacker likes), and RATE_GLOBAL MAIL
commands a minute (from enough IPv6 /64s to pass RATE_PER_NETWORK) stopped
all mail with `451 4.7.1`. Now each is checked at its step and counted once
the message is accepted; a real flood is still refused."""

from __future__ import annotations

import pytest

from .defence_helpers import send
from .raw import Raw

VICTIM = "victim@example.com"


@pytest.mark.parametrize(
    "limit, refused_at",
    [({"rate_per_mailbox": "3/minute"}, "RCPT"), ({"rate_global": "3/minute"}, "MAIL")],
)
def test_transactions_without_a_message_lock_nobody_out(make_server, limit, refused_at):
    server = make_server(rate_limits="enforce", **limit)
    with Raw(server.port, source="127.0.0.66") as attacker:
        attacker.hello()
        for _ in range(10):  # MAIL, RCPT, RSET: 250 each; 451 or 452 once counted
            attacker.cmd(b"MAIL FROM:<a@attacker.test>")
            attacker.cmd(b"RCPT TO:<" + VICTIM.encode() + b">")
            assert attacker.cmd(b"RSET").startswith(b"250")
    for _ in range(3):  # real mail, up to the limit
        assert send(server.port, recipients=(VICTIM,))[:2] == ("DATA", 250)
    assert send(server.port, recipients=(VICTIM,))[:2] == (
        refused_at,
        451 if refused_at == "MAIL" else 452,
    )
