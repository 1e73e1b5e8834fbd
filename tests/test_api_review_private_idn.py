"""Review finding: private_email rows written with an IDN domain or stray
whitespace were open to everyone through the API.

The API compared `lower(email)` with the normalised address (punycode,
trimmed), so `vip@例え.jp` or ` boss@example.com` never matched: anyone read
their mail and anyone could claim them with POST /accounts, while the SMTP
side (policy.build_private) counted them as private. The API now reads the
list through the same source and normalisation (app/api/private.py).
"""

from __future__ import annotations

import pytest

from .api_fixtures import make_stack
from .api_helpers import mail, send
from .helpers import eventually, query

HUB = "/.well-known/mercure"
SPELLINGS = [
    ("vip@例え.jp", "vip@xn--r8jz45g.jp"),
    (" boss@example.com", "boss@example.com"),
    ("  Chief@例え.JP. ", "chief@xn--r8jz45g.jp"),
]


def stored(url: str, address: str) -> bool:
    return bool(query(url, "SELECT 1 FROM emails WHERE mailbox_owner = $1", address))


@pytest.mark.parametrize("listed,rcpt", SPELLINGS)
def test_private_address_is_not_open(make_stack, listed, rcpt):
    stack = make_stack(private_email=(listed,))
    send(stack.smtp.port, [rcpt], mail(rcpt, subject="private-mail", text="password reset 4242"))
    eventually(lambda: stored(stack.database_url, rcpt))
    with stack.client() as anyone:
        # The address as stored, and as the website wrote it: neither opens it.
        for spelling in (rcpt, listed.strip()):
            listed_msgs = anyone.get(f"/mailpit/{spelling}/api/v1/messages")
            assert listed_msgs.status_code == 401, (
                f"private address {listed!r} read anonymously as {spelling!r}: "
                f"{listed_msgs.status_code} {listed_msgs.text[:200]}"
            )
            topic = anyone.get(HUB, params={"topic": f"/addresses/{spelling}"})
            assert topic.status_code == 401
            claim = {"address": spelling, "password": "attacker-pass"}
            taken = anyone.post("/accounts", json=claim)
            assert taken.status_code == 422, f"a stranger claimed private {spelling}: {taken.text}"


def test_a_row_added_while_the_api_runs_closes_the_address(make_stack):
    """The list is refreshed every PRIVATE_REFRESH seconds, normalised the same way."""
    stack = make_stack(private_refresh="0.2")
    rcpt = "late@xn--r8jz45g.jp"
    send(stack.smtp.port, [rcpt], mail(rcpt, subject="before"))
    eventually(lambda: stored(stack.database_url, rcpt))
    path = f"/mailpit/{rcpt}/api/v1/messages"
    with stack.client() as anyone:
        assert anyone.get(path).status_code == 200  # open until the website lists it
        query(stack.database_url, "INSERT INTO private_email (email) VALUES (' Late@例え.jp')")
        eventually(lambda: anyone.get(path).status_code == 401)
        taken = anyone.post("/accounts", json={"address": rcpt, "password": "attacker-pass"})
        assert taken.status_code == 422
