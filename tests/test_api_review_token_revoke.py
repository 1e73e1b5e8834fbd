"""Review finding (issue 21 item 5): tokens survived a password change.

After `accounts passwd` a token issued before it still listed and read the
mail, and its open Mercure stream went on delivering new mail: a token named
its account, and the account still existed. Now every account has a token
generation (migration 012): a password change, or `accounts revoke-tokens`,
moves it on, and a token of an older generation reads nothing, on any route
and on any open stream, while the mail stays.
"""

from __future__ import annotations

import httpx
import pytest

from .api_fixtures import make_stack
from .api_helpers import (
    HUB,
    account,
    ends_without,
    mail,
    next_event,
    open_stream,
    send,
    sse_events,
    wait_messages,
)
from .helpers import app_command, query

ADDRESS = "owner@example.com"
MAILPIT = f"/mailpit/{ADDRESS}/api/v1"


def refused_with(token: str, client: httpx.Client, account_id: str, message_id: str) -> list[str]:
    """The routes that did not answer 401 to `token`."""
    bearer = {"Authorization": f"Bearer {token}"}
    answers = [
        client.get("/me", headers=bearer),
        client.get(f"/accounts/{account_id}", headers=bearer),
        client.get("/messages", headers=bearer),
        client.get(f"/messages/{message_id}", headers=bearer),
        client.get(f"/messages/{message_id}/download", headers=bearer),
        client.get(f"{MAILPIT}/messages", headers=bearer),
        client.get(f"{MAILPIT}/message/{message_id}/raw", headers=bearer),
    ]
    return [f"{r.request.url.path} {r.status_code}" for r in answers if r.status_code != 401]


CHANGES = {
    "passwd": (("accounts", "passwd", ADDRESS), "new-password\n", "new-password"),
    "revoke-tokens": (("accounts", "revoke-tokens", ADDRESS), None, "old-password"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_tokens_issued_before_a_change_read_nothing(make_stack, change):
    stack = make_stack()
    args, stdin, password = CHANGES[change]
    with stack.client() as client:
        account_id, old = account(client, ADDRESS, "old-password")
        send(stack.smtp.port, [ADDRESS], mail(ADDRESS, subject="before", text="code 111111"))
        with stack.client(old) as reader:
            [message] = wait_messages(reader, 1)
        with open_stream(client, f"/accounts/{account_id}", old) as response:
            assert response.status_code == 200
            events = sse_events(response)
            send(stack.smtp.port, [ADDRESS], mail(ADDRESS, subject="while-open"))
            assert next_event(events)["data"]["subject"] == "while-open"

            done = app_command(*args, stdin=stdin, **stack.api.env)
            assert done.returncode == 0, done.stderr

            send(stack.smtp.port, [ADDRESS], mail(ADDRESS, subject="after", text="code 222222"))
            ends_without(events, "after")
        assert refused_with(old, client, account_id, message["id"]) == []
        topic = {"topic": f"/accounts/{account_id}"}
        hub = client.get(HUB, params=topic, headers={"Authorization": f"Bearer {old}"})
        assert hub.status_code == 401
        if change == "passwd":
            old_basic = client.get(f"{MAILPIT}/messages", auth=(ADDRESS, "old-password"))
            assert old_basic.status_code == 401

        # A token issued now (the same second as the change) reads, and the mail is all there.
        signed = client.post("/token", json={"address": ADDRESS, "password": password})
        assert signed.status_code == 200, signed.text
        new = signed.json()["token"]
        assert refused_with(new, client, account_id, message["id"]) == [
            "/me 200",
            f"/accounts/{account_id} 200",
            "/messages 200",
            f"/messages/{message['id']} 200",
            f"/messages/{message['id']}/download 200",
            f"{MAILPIT}/messages 200",
            f"{MAILPIT}/message/{message['id']}/raw 200",
        ]
        with stack.client(new) as reader:
            assert len(wait_messages(reader, 3)) == 3
        with open_stream(client, f"/accounts/{account_id}", new) as response:
            events = sse_events(response)
            send(stack.smtp.port, [ADDRESS], mail(ADDRESS, subject="to-the-new-token"))
            assert next_event(events)["data"]["subject"] == "to-the-new-token"
    assert query(stack.database_url, "SELECT count(*) FROM emails")[0][0] == 4


def test_revoke_tokens_of_an_address_without_an_account(make_stack):
    stack = make_stack()
    done = app_command("accounts", "revoke-tokens", "nobody@example.com", **stack.api.env)
    assert done.returncode == 1
    assert done.stderr.strip() == "error: nobody@example.com has no account"
