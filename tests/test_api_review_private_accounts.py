"""Review finding: a stranger's account outlived the website's claim.

POST /accounts refuses an address listed in private_email, but not one the
website lists later (or within PRIVATE_REFRESH of the listing): a stranger
who made an account on it first kept reading it, with the token and with
the password, including the mail of the website's user. Now the listing
wins: on a private_email address only an account the operator made
(`accounts add`) is a credential; the stranger's reads nothing, on any
route, and cannot delete the mail either. The operator gives the address to
its owner with `accounts remove` and `accounts add`; the mail is kept.
"""

from __future__ import annotations

import httpx

from .api_fixtures import make_stack
from .api_helpers import HUB, account, mail, send, wait_messages
from .helpers import app_command, eventually, query

ADDRESS = "target@example.com"
MAILPIT = f"/mailpit/{ADDRESS}/api/v1/messages"


def test_private_listing_wins_over_a_strangers_account(make_stack):
    stack = make_stack(private_refresh="0.2")
    with stack.client() as client:
        account_id, token = account(client, ADDRESS, "stranger-pass")
    send(stack.smtp.port, [ADDRESS], mail(ADDRESS, subject="reset", text="code 424242"))
    stranger = stack.client(token)
    basic = httpx.BasicAuth(ADDRESS, "stranger-pass")
    [message] = wait_messages(stranger, 1)
    assert stranger.get(MAILPIT).status_code == 200  # not private yet: the account reads it

    # The website lists the address (spelled as people type it).
    query(stack.database_url, "INSERT INTO private_email (email) VALUES (' Target@Example.com')")
    eventually(lambda: stranger.get("/messages").status_code == 401)
    with stack.client() as anyone:
        refused = [
            stranger.get("/me"),
            stranger.get(f"/accounts/{account_id}"),
            stranger.get(f"/messages/{message['id']}"),
            stranger.get(f"/messages/{message['id']}/download"),
            stranger.get(MAILPIT),
            anyone.get(MAILPIT, auth=basic),
            stranger.get(HUB, params={"topic": f"/accounts/{account_id}"}),
            stranger.get(HUB, params={"topic": f"/addresses/{ADDRESS}"}),
            anyone.post("/token", json={"address": ADDRESS, "password": "stranger-pass"}),
            stranger.delete(f"/accounts/{account_id}"),
            stranger.delete(f"/messages/{message['id']}"),
            stranger.delete(MAILPIT),
        ]
        assert [r.status_code for r in refused] == [401] * len(refused), [
            (r.request.method, r.request.url.path, r.status_code) for r in refused
        ]
    stranger.close()
    assert query(stack.database_url, "SELECT count(*) FROM emails")[0][0] == 1

    # The operator gives the address to its owner; the mail is still there.
    env = stack.api.env
    assert app_command("accounts", "remove", ADDRESS, **env).returncode == 0
    made = app_command("accounts", "add", ADDRESS, stdin="owner-password\n", **env)
    assert made.returncode == 0, made.stderr
    listed = app_command("accounts", "list", **env).stdout
    assert listed.startswith(f"{ADDRESS}\t") and listed.rstrip().endswith("\toperator")
    with stack.client() as owner:
        owned = owner.get(MAILPIT, auth=httpx.BasicAuth(ADDRESS, "owner-password"))
        assert owned.status_code == 200 and owned.json()["total"] == 1
        signed = owner.post("/token", json={"address": ADDRESS, "password": "owner-password"})
        assert signed.status_code == 200
        read = owner.get("/messages", headers={"Authorization": f"Bearer {signed.json()['token']}"})
        assert read.status_code == 200 and len(read.json()["hydra:member"]) == 1
