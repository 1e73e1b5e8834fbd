"""Review finding: an event stream was authorised once, when it opened, and
never again. An anonymous stream of an open address kept receiving its
mail after the owner claimed it; a token's stream kept receiving after its
account was deleted, in API_ACCESS=accounts even the next owner's mail.

Now a stream's access is decided again before it delivers (app/api/mercure.py):
at once when the address's access may have changed (an account created or
deleted anywhere, the address listed in private_email), otherwise when the
last decision is older than RECHECK_SECONDS; refused, the stream ends with
no further event.
"""

from __future__ import annotations

import uuid

import pytest

from .api_fixtures import make_stack, stack
from .api_helpers import account, ends_without, mail, next_event, open_stream, send, sse_events
from .helpers import app_command, query

VICTIM = "victim@example.com"


def claim(how: str, client, env: dict[str, str]) -> None:
    if how == "POST /accounts":
        account(client, VICTIM)
    else:  # the operator's command, in a process of its own
        made = app_command("accounts", "add", VICTIM, stdin="owner-password\n", **env)
        assert made.returncode == 0, made.stderr


@pytest.mark.parametrize("how", ["POST /accounts", "accounts add"])
def test_anonymous_stream_stops_when_the_address_is_claimed(stack, how):
    with stack.client() as anonymous, stack.client() as owner:
        with open_stream(anonymous, f"/addresses/{VICTIM}") as response:
            assert response.status_code == 200  # open address: allowed, as designed
            events = sse_events(response)
            send(stack.smtp.port, [VICTIM], mail(VICTIM, subject="while-open"))
            assert next_event(events)["data"]["subject"] == "while-open"
            # The owner claims the address: from now on only their credential reads it.
            claim(how, owner, stack.api.env)
            assert anonymous.get(f"/mailpit/{VICTIM}/api/v1/messages").status_code == 401
            secret = mail(VICTIM, subject="secret-after-claim", text="reset code 123456")
            send(stack.smtp.port, [VICTIM], secret)
            ends_without(events, "secret-after-claim")


def test_deleted_account_stream_reads_the_next_owner(make_stack):
    stack = make_stack(api_access="accounts")
    with stack.client() as first, stack.client() as second:
        first_id, token = account(first, "shared@example.com")
        with open_stream(first, f"/accounts/{first_id}", token) as response:
            assert response.status_code == 200
            events = sse_events(response)
            first.headers["Authorization"] = f"Bearer {token}"
            assert first.delete(f"/accounts/{first_id}").status_code == 204
            assert first.get("/me").status_code == 401
            account(second, "shared@example.com")  # a new owner of the address
            new_mail = mail("shared@example.com", subject="for-the-new-owner")
            send(stack.smtp.port, ["shared@example.com"], new_mail)
            ends_without(events, "for-the-new-owner")


def test_stream_ends_when_the_address_becomes_private(make_stack):
    stack = make_stack(private_refresh="0.2")
    with stack.client() as anonymous:
        with open_stream(anonymous, f"/addresses/{VICTIM}") as response:
            events = sse_events(response)
            send(stack.smtp.port, [VICTIM], mail(VICTIM, subject="while-open"))
            assert next_event(events)["data"]["subject"] == "while-open"
            query(
                stack.database_url,
                "INSERT INTO private_email (email) VALUES (' Victim@Example.com')",
            )
            ends_without(events, "while-open")  # by itself, at the list's next refresh


def test_a_claim_the_api_is_not_told_of_ends_the_stream_within_the_bound(stack):
    """An account written by SQL (no announcement): the stream goes on only
    until its decision is RECHECK_SECONDS old, at its next message."""
    with stack.client() as anonymous:
        with open_stream(anonymous, f"/addresses/{VICTIM}") as response:
            events = sse_events(response)
            query(
                stack.database_url,
                "INSERT INTO accounts (id, address, password_hash) VALUES ($1, $2, 'x')",
                uuid.uuid4(),
                VICTIM,
            )
            for n in range(1000):
                send(stack.smtp.port, [VICTIM], mail(VICTIM, subject=f"m{n}"))
                try:
                    assert next_event(events)["data"]["subject"] == f"m{n}"
                except AssertionError as ended:
                    assert str(ended) == "stream ended", ended
                    return
            raise AssertionError("the stream went on for 1000 messages after the claim")
