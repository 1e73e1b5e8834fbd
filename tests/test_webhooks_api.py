"""An account's own webhooks through the API (mail.tm bearer tokens), the API
connected as its own least-privileged role (the grants of app/db_grants.py):
a token adds, lists and deletes webhooks of its own address only, and its
webhook receives that address's mail."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from .api_helpers import ApiServer, account, mail, send
from .helpers import ADMIN_URL, app_command, eventually, query
from .webhook_helpers import FAST, add_hook, outbox
from .webhook_receiver import Receiver


@pytest.fixture
def api_role(database_url: str) -> Iterator[str]:
    """A login role of this test's own, granted by init-db (API_DATABASE_URL)."""
    role = "w25h" + uuid.uuid4().hex[:10]
    query(ADMIN_URL, f"CREATE ROLE {role} LOGIN")
    try:
        yield database_url.replace("://postgres@", f"://{role}@")
    finally:
        query(database_url, f"DROP OWNED BY {role}")
        query(ADMIN_URL, f"DROP ROLE {role}")


def make_a_webhook(client: httpx.Client, receiver: Receiver, as_a: dict) -> dict:
    """Webhooks need a token; a's is made for a's address whatever the body
    names (its secret given to `receiver`); a bad URL and a second webhook
    (over WEBHOOK_MAX_PER_ADDRESS=1) are refused. The webhook made."""
    assert client.get("/webhooks").status_code == 401
    assert client.post("/webhooks", json={"url": receiver.url}).status_code == 401
    # The address is the token's: one named in the body is not taken.
    body = {"url": receiver.url, "address": "b@example.com"}
    made = client.post("/webhooks", json=body, headers=as_a)
    assert made.status_code == 201, made.text
    hook = made.json()
    assert hook["address"] == "a@example.com" and hook["secret"].startswith("whsec_")
    receiver.secret = hook["secret"]
    bad = client.post("/webhooks", json={"url": "ftp://x/"}, headers=as_a)
    assert bad.status_code == 422 and "only http://" in bad.text
    over = client.post("/webhooks", json={"url": receiver.url}, headers=as_a)
    assert over.status_code == 422 and "may have 1 webhooks" in over.text
    return hook


def test_token_manages_only_its_own_webhooks(make_server, database_url, api_role, tmp_path):
    server = make_server(**FAST)
    granted = app_command("init-db", DATABASE_URL=database_url, API_DATABASE_URL=api_role)
    assert granted.returncode == 0, granted.stderr
    api = ApiServer(
        database_url,
        str(tmp_path / "data"),
        api_database_url=api_role,
        webhook_max_per_address="1",
        **FAST,
    )
    receiver = Receiver()
    client = httpx.Client(timeout=30)
    try:
        api.start()
        client.base_url = httpx.URL(api.url)
        operator_hook, _ = add_hook(database_url, receiver.url, "--address", "b@example.com")
        _, token_a = account(client, "a@example.com")
        _, token_b = account(client, "b@example.com")
        as_a = {"Authorization": f"Bearer {token_a}"}
        as_b = {"Authorization": f"Bearer {token_b}"}

        hook = make_a_webhook(client, receiver, as_a)

        listed_a = client.get("/webhooks", headers=as_a).json()
        assert [h["id"] for h in listed_a] == [hook["id"]] and "secret" not in listed_a[0]
        # b sees neither a's nor the operator's webhook for b, and cannot delete them.
        assert client.get("/webhooks", headers=as_b).json() == []
        assert client.delete(f"/webhooks/{hook['id']}", headers=as_b).status_code == 404
        assert client.delete(f"/webhooks/{operator_hook}", headers=as_b).status_code == 404
        assert client.delete("/webhooks/99999999999999999999", headers=as_b).status_code == 404

        server.wait_for_log(r"\[webhooks\] subscribed: not every address, 2 addresses")
        send(server.port, ["a@example.com"], mail("a@example.com", "for a"))
        eventually(
            lambda: any(r.payload["data"]["address"] == "a@example.com" for r in receiver.received)
        )
        mine = [r for r in receiver.received if r.payload["data"]["address"] == "a@example.com"]
        assert mine[0].valid and mine[0].payload["data"]["subject"] == "for a"
        eventually(lambda: client.get("/webhooks", headers=as_a).json()[0]["delivered"] == 1)

        assert client.delete(f"/webhooks/{hook['id']}", headers=as_a).status_code == 204
        assert client.get("/webhooks", headers=as_a).json() == []
        remaining = query(database_url, "SELECT id FROM webhook_endpoints")
        assert [r["id"] for r in remaining] == [operator_hook]
        assert outbox(database_url) == []
    finally:
        client.close()
        receiver.stop()
        if api.process is not None and api.process.poll() is None:
            api.kill()
