"""Who reads what: a credential for one address never reads another's mail, on
any route; claimed and private addresses need their own; API_ACCESS=accounts."""

from __future__ import annotations

import uuid

import httpx
import pytest

from .api_fixtures import make_stack, stack
from .api_helpers import account, mail, send, wait_messages
from .helpers import app_command, query


def basic(address: str, password: str) -> httpx.BasicAuth:
    return httpx.BasicAuth(address, password)


def mailpit_paths(address: str, ident: str) -> list[tuple[str, str]]:
    base = f"/mailpit/{address}/api/v1"
    return [
        ("GET", f"{base}/messages"),
        ("GET", f"{base}/search?query=hello"),
        ("GET", f"{base}/message/{ident}"),
        ("GET", f"{base}/message/latest"),
        ("GET", f"{base}/message/{ident}/raw"),
        ("GET", f"{base}/message/{ident}/headers"),
        ("GET", f"{base}/message/{ident}/part/2"),
        ("PUT", f"{base}/messages"),
        ("DELETE", f"{base}/messages"),
    ]


def mailtm_paths(ident: str) -> list[tuple[str, str]]:
    return [
        ("GET", f"/messages/{ident}"),
        ("PATCH", f"/messages/{ident}"),
        ("GET", f"/messages/{ident}/download"),
        ("GET", f"/messages/{ident}/attachment/ATTACH000001"),
        ("GET", f"/sources/{ident}"),
        ("DELETE", f"/messages/{ident}"),
    ]


def request(client: httpx.Client, method: str, path: str, **kwargs) -> httpx.Response:
    if method == "PATCH":
        kwargs.setdefault("headers", {})["Content-Type"] = "application/merge-patch+json"
        kwargs["content"] = b'{"seen": true}'
    if method == "PUT":
        kwargs["json"] = {"IDs": [], "Read": True}
    return client.request(method, path, **kwargs)


@pytest.fixture
def two(stack):
    """Bob and Carol with accounts and one message each (Carol's has an attachment)."""
    with stack.client() as client:
        account(client, "bob@example.com", "bob-password")
        _, carol = account(client, "carol@example.com", "carol-password")
    attachment = (("a.txt", "text/plain", b"carol's"),)
    send(stack.smtp.port, ["bob@example.com"], mail("bob@example.com"))
    send(stack.smtp.port, ["carol@example.com"], mail("carol@example.com", attachments=attachment))
    with stack.client(carol) as client:
        [message] = wait_messages(client, 1)
    with stack.client() as client:
        bob = client.post("/token", json={"address": "bob@example.com", "password": "bob-password"})
    return stack, bob.json()["token"], carol, message["id"]


def test_a_token_never_reads_another_address_on_any_route(two):
    stack, bob, carol, carols_message = two
    with stack.client(bob) as client:
        for method, path in mailtm_paths(carols_message):
            answer = request(client, method, path)
            assert answer.status_code == 404, (method, path, answer.status_code)
        assert carols_message not in client.get("/messages").text
        for method, path in mailpit_paths("carol@example.com", carols_message):
            answer = request(client, method, path)
            assert answer.status_code == 403, (method, path, answer.status_code)
        hub = client.get("/.well-known/mercure", params={"topic": "/addresses/carol@example.com"})
        assert hub.status_code == 403
    with stack.client() as client:
        for method, path in mailpit_paths("carol@example.com", carols_message):
            # Bob's password does not open Carol's mailbox either.
            answer = request(client, method, path, auth=basic("bob@example.com", "bob-password"))
            assert answer.status_code == 403, (method, path)
            # Nor does nothing, or a wrong password: 401 with a basic challenge.
            for auth in (None, basic("carol@example.com", "wrong-password")):
                answer = request(client, method, path, auth=auth)
                assert answer.status_code == 401, (method, path)
                assert answer.headers["www-authenticate"].startswith("Basic")
    # Nothing of Carol's was changed by all that.
    assert query(stack.database_url, "SELECT count(*) FROM emails")[0][0] == 2
    with stack.client(carol) as client:
        assert client.get(f"/messages/{carols_message}").json()["seen"] is False
        for method, path in mailtm_paths(carols_message):
            answer = request(client, method, path)
            assert answer.status_code in (200, 204), (method, path, answer.status_code)


def test_own_credentials_read_on_every_mailpit_route(two):
    stack, bob, carol, carols_message = two
    for auth in ({"auth": basic("Carol@Example.com", "carol-password")},
                 {"headers": {"Authorization": f"Bearer {carol}"}}):  # fmt: skip
        with stack.client() as client:
            for method, path in mailpit_paths("carol@example.com", carols_message)[:-1]:
                answer = request(client, method, path, **auth)
                assert answer.status_code == 200, (method, path, answer.text)


def test_open_address_is_readable_by_anyone_until_claimed(stack):
    send(stack.smtp.port, ["free@example.com"], mail("free@example.com", subject="free"))
    with stack.client() as client:
        listed = client.get("/mailpit/free@example.com/api/v1/messages")
        while listed.json()["total"] == 0:  # until the commit
            listed = client.get("/mailpit/free@example.com/api/v1/messages")
        assert listed.status_code == 200
        assert listed.json()["messages"][0]["Subject"] == "free"
        account(client, "free@example.com")
        assert client.get("/mailpit/free@example.com/api/v1/messages").status_code == 401


def test_private_addresses_belong_to_the_website(make_stack):
    stack = make_stack(private_email=("Owner@Example.com",))
    with stack.client() as client:
        refused = client.post(
            "/accounts", json={"address": "owner@example.com", "password": "secret-pass"}
        )
        assert refused.status_code == 422
        assert client.get("/mailpit/owner@example.com/api/v1/messages").status_code == 401
    # The operator makes its account; the password comes on standard input.
    made = app_command(
        "accounts", "add", "owner@example.com", stdin="owner-password\n", **stack.api.env
    )
    assert made.returncode == 0, made.stderr
    assert "added owner@example.com" in made.stdout
    with stack.client() as client:
        token = client.post(
            "/token", json={"address": "owner@example.com", "password": "owner-password"}
        )
        assert token.status_code == 200
        auth = basic("owner@example.com", "owner-password")
        assert (
            client.get("/mailpit/owner@example.com/api/v1/messages", auth=auth).status_code == 200
        )


def test_accounts_mode_needs_an_account_for_every_address(make_stack):
    stack = make_stack(api_access="accounts")
    with stack.client() as client:
        assert client.get("/mailpit/free@example.com/api/v1/messages").status_code == 401
        account(client, "mine@example.com", "mine-password")
        auth = basic("mine@example.com", "mine-password")
        assert client.get("/mailpit/mine@example.com/api/v1/messages", auth=auth).status_code == 200


def test_unknown_ids_and_malformed_paths(stack):
    with stack.client() as client:
        _, token = account(client, "bob@example.com")
    with stack.client(token) as client:
        assert client.get(f"/messages/{uuid.uuid4()}").status_code == 404
        assert client.get("/messages/not-a-uuid").status_code == 404
        assert client.get("/mailpit/bob@example.com/api/v1/message/latest").status_code == 404
        assert client.get("/mailpit/not-an-address/api/v1/messages").status_code == 404
        assert client.post("/messages").status_code == 405
