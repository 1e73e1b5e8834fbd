"""A webhook belongs to the account that made it: once that account is
deleted (DELETE /accounts/{id}: "the address is open again", or the
operator's `accounts remove`), its webhooks go too, so whoever takes the
address next neither sees them nor has its mail pushed to their receiver."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from .api_helpers import ApiServer, account, mail, send, wait_messages
from .helpers import app_command, eventually, install_schema, query
from .webhook_helpers import FAST, add_hook, outbox
from .webhook_receiver import Receiver

ADDRESS = "reused@example.com"


@pytest.fixture
def hooked(database_url: str, tmp_path) -> Iterator[tuple[httpx.Client, Receiver, str]]:
    """The API, an account of ADDRESS with a webhook to a receiver:
    (client, receiver, the account's id)."""
    install_schema(database_url, ("example.com",))
    # The listing is seen within PRIVATE_REFRESH (30 s by default: the wait's own bound).
    api = ApiServer(database_url, str(tmp_path / "data"), **FAST, private_refresh="0.5")
    receiver = Receiver()
    client = httpx.Client(timeout=30)
    try:
        api.start()
        client.base_url = httpx.URL(api.url)
        account_id, token = account(client, ADDRESS)
        client.headers["Authorization"] = f"Bearer {token}"
        made = client.post("/webhooks", json={"url": receiver.url})
        assert made.status_code == 201, made.text
        receiver.secret = made.json()["secret"]
        yield client, receiver, account_id
    finally:
        client.close()
        receiver.stop()
        if api.process is not None and api.process.poll() is None:
            api.kill()


def test_deleted_account_takes_its_webhooks(make_server, database_url, hooked):
    client, old_owners, account_id = hooked
    server = make_server(**FAST)
    assert client.delete(f"/accounts/{account_id}").status_code == 204
    assert query(database_url, "SELECT id FROM webhook_endpoints") == []

    # Someone else takes the address: none of the old owner's webhooks.
    _, token = account(client, ADDRESS, "another-pass")
    client.headers["Authorization"] = f"Bearer {token}"
    assert client.get("/webhooks").json() == []
    server.wait_for_log(r"\[webhooks\] subscribed: not every address, 0 addresses")
    send(server.port, [ADDRESS], mail(ADDRESS, "the new owner's code"))
    wait_messages(client, 1)
    assert old_owners.received == []


def test_accounts_remove_takes_its_webhooks(database_url, hooked):
    """`accounts remove` (how the operator gives a private_email address to its
    owner) drops the webhooks the stranger's account made for it."""
    removed = app_command("accounts", "remove", ADDRESS, DATABASE_URL=database_url)
    assert removed.returncode == 0, removed.stderr
    assert query(database_url, "SELECT id FROM webhook_endpoints") == []


def test_a_listed_private_address_stops_a_strangers_webhook(make_server, database_url, hooked):
    """The website lists the address in private_email: the stranger's token can
    no longer read it (401), and its webhook made before no longer gets the
    mail (found by review: it got every message); the operator's endpoint for
    the address still does."""
    client, strangers, _ = hooked
    operators = Receiver()
    try:
        _, operators.secret = add_hook(database_url, operators.url, "--address", ADDRESS)
        query(database_url, "INSERT INTO private_email (email) VALUES (' Reused@Example.com')")
        eventually(lambda: client.get("/webhooks").status_code == 401)
        server = make_server(**FAST)
        server.wait_for_log(r"\[webhooks\] subscribed")
        send(server.port, [ADDRESS], mail(ADDRESS, "the website user's reset"))
        eventually(lambda: operators.received)
        assert operators.received[0].payload["data"]["subject"] == "the website user's reset"
        eventually(lambda: outbox(database_url) == [])  # nothing else is on its way
        assert strangers.received == []
    finally:
        operators.stop()


def test_an_operator_made_account_keeps_its_webhook_on_a_private_address(
    make_server, database_url, tmp_path
):
    """The owner the operator gave the address to (`accounts add`) may read it,
    and its own webhook gets the mail."""
    install_schema(database_url, ("example.com",))
    query(database_url, "INSERT INTO private_email (email) VALUES ($1)", ADDRESS)
    made = app_command("accounts", "add", ADDRESS, stdin="owner-pass\n", DATABASE_URL=database_url)
    assert made.returncode == 0, made.stderr
    api = ApiServer(database_url, str(tmp_path / "data"), **FAST)
    receiver = Receiver()
    try:
        api.start()
        with httpx.Client(base_url=api.url, timeout=30) as client:
            token = client.post("/token", json={"address": ADDRESS, "password": "owner-pass"})
            assert token.status_code == 200, token.text
            client.headers["Authorization"] = f"Bearer {token.json()['token']}"
            hook = client.post("/webhooks", json={"url": receiver.url})
            assert hook.status_code == 201, hook.text
            receiver.secret = hook.json()["secret"]
        server = make_server(**FAST)
        server.wait_for_log(r"\[webhooks\] subscribed")
        send(server.port, [ADDRESS], mail(ADDRESS, "for the owner"))
        eventually(lambda: receiver.received)
        assert receiver.received[0].valid
    finally:
        receiver.stop()
        if api.process is not None and api.process.poll() is None:
            api.kill()
