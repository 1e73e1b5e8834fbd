"""mail.tm-compatible routes end to end: real SMTP in, real HTTP out, real PostgreSQL."""

from __future__ import annotations

import uuid

import httpx

from .api_fixtures import make_stack, stack
from .api_helpers import account, mail, send, send_many, wait_messages
from .helpers import as_sent, query

LD = "application/ld+json; charset=utf-8"
JSON = "application/json; charset=utf-8"


def test_domains_in_both_accept_forms(stack):
    with stack.client() as client:
        hydra = client.get("/domains")
        assert hydra.status_code == 200
        assert hydra.headers["content-type"] == LD
        body = hydra.json()
        assert body["@type"] == "hydra:Collection"
        # The wildcard entry (*.example.org) is no domain an account can be made on.
        assert [d["domain"] for d in body["hydra:member"]] == ["example.com", "xn--r8jz45g.jp"]
        assert body["hydra:totalItems"] == 2
        assert "hydra:view" not in body  # one page
        member = body["hydra:member"][0]
        assert member["isActive"] is True and member["isPrivate"] is False
        assert member["@type"] == "Domain" and member["@id"] == f"/domains/{member['id']}"
        assert client.get("/domains", headers={"Accept": "*/*"}).json() == body

        plain = client.get("/domains", headers={"Accept": "application/json"})
        assert plain.headers["content-type"] == JSON
        assert isinstance(plain.json(), list)
        assert plain.json()[0]["domain"] == "example.com"
        assert "@id" not in plain.json()[0]

        one = client.get(f"/domains/{member['id']}")
        assert one.status_code == 200 and one.json()["domain"] == "example.com"
        assert client.get(f"/domains/{uuid.uuid4()}").status_code == 404
        # An empty bearer token on a public route is ignored, not refused (HTTP
        # strips the trailing space of "Bearer ", so this is what arrives).
        assert client.get("/domains", headers={"Authorization": "Bearer"}).status_code == 200


def test_account_creation_rules(stack):
    with stack.client(Authorization="Bearer") as client:
        created = client.post(
            "/accounts", json={"address": "Bob@Example.com", "password": "secret-pass"}
        )
        assert created.status_code == 201
        body = created.json()
        assert body["address"] == "bob@example.com"
        assert body["used"] == 0 and body["isDisabled"] is False and body["isDeleted"] is False
        assert set(body) >= {"id", "quota", "createdAt", "updatedAt", "@id", "@type"}

        def violations(payload: dict) -> list[str]:
            answer = client.post("/accounts", json=payload)
            assert answer.status_code == 422, answer.text
            assert answer.headers["content-type"].startswith("application/ld+json")
            return [v["propertyPath"] for v in answer.json()["violations"]]

        assert violations({"address": "bob@example.com", "password": "another-1"}) == ["address"]
        assert violations({"address": "not-an-address", "password": "secret-pass"}) == ["address"]
        assert violations({"address": "x@not-ours.test", "password": "secret-pass"}) == ["address"]
        assert violations({"address": "x@example.org", "password": "secret-pass"}) == ["address"]
        assert violations({"address": "x@example.com", "password": "abc"}) == ["password"]
        # *.example.org allows any subdomain; 例え.jp is stored in punycode.
        deep = client.post(
            "/accounts", json={"address": "x@deep.sub.example.org", "password": "secret-pass"}
        )
        assert deep.status_code == 201
        idn = client.post("/accounts", json={"address": "y@例え.jp", "password": "secret-pass"})
        assert idn.status_code == 201 and idn.json()["address"] == "y@xn--r8jz45g.jp"
        assert client.post("/accounts", content=b"{oops").status_code == 400


def test_token_me_account_and_delete(stack):
    with stack.client() as client:
        bob_id, bob = account(client, "bob@example.com")
        carol_id, carol = account(client, "carol@example.com")
        bad = client.post("/token", json={"address": "bob@example.com", "password": "wrong-one"})
        assert bad.status_code == 401 and bad.json()["message"] == "Invalid credentials."
        nobody = client.post("/token", json={"address": "no@example.com", "password": "x" * 8})
        assert nobody.status_code == 401

        missing = client.get("/me")
        assert missing.status_code == 401
        assert missing.json() == {"code": 401, "message": "JWT Token not found"}
        assert client.get("/me", headers={"Authorization": "Bearer nonsense"}).status_code == 401
        forged = bob[:-4] + ("AAAA" if not bob.endswith("AAAA") else "BBBB")
        assert client.get("/me", headers={"Authorization": f"Bearer {forged}"}).status_code == 401

        auth = {"Authorization": f"Bearer {bob}"}
        me = client.get("/me", headers=auth)
        assert me.status_code == 200 and me.json()["id"] == bob_id
        assert client.get(f"/accounts/{bob_id}", headers=auth).json()["address"] == (
            "bob@example.com"
        )
        assert client.get(f"/accounts/{carol_id}", headers=auth).status_code == 404
        assert client.delete(f"/accounts/{carol_id}", headers=auth).status_code == 404

        send(stack.smtp.port, ["bob@example.com"], mail("bob@example.com"))
        with stack.client(bob) as bob_client:
            wait_messages(bob_client, 1)
        deleted = client.delete(f"/accounts/{bob_id}", headers=auth)
        assert deleted.status_code == 204 and deleted.content == b""
        assert client.get("/me", headers=auth).status_code == 401  # the token died with it
        # Its mail went with it: the address is open to anyone again.
        assert query(stack.database_url, "SELECT count(*) FROM emails")[0][0] == 0
        assert query(stack.database_url, "SELECT count(*) FROM raw_messages")[0][0] == 0
        assert client.get("/me", headers={"Authorization": f"Bearer {carol}"}).status_code == 200


def check_full_message(client, ident: str) -> dict:
    """GET /messages/{id} of Bob's message: its HTML sanitised (remote images on
    request only), its attachment listed; that attachment's entry."""
    full = client.get(f"/messages/{ident}")
    assert full.status_code == 200 and full.headers["content-type"] == LD
    body = full.json()
    assert body["@type"] == "Message" and body["text"].startswith("Hello Bob,")
    assert isinstance(body["html"], list) and len(body["html"]) == 1
    html = body["html"][0]
    assert "<b>Bob</b>" in html
    assert "script" not in html and "onclick" not in html and "tracker.test" not in html
    remote = client.get(f"/messages/{ident}", params={"remoteImages": "1"}).json()
    assert 'src="https://tracker.test/p.gif"' in remote["html"][0]
    assert body["cc"] == [] and body["bcc"] == [] and body["verifications"] == []
    [attached] = body["attachments"]
    assert attached["filename"] == "report.pdf"
    assert attached["contentType"] == "application/pdf"
    assert attached["size"] == len(b"%PDF-1.4 fake")
    return attached


def check_downloads(client, ident: str, attached: dict) -> bytes:
    """The attachment and the whole message go out as sandboxed downloads; the
    message's bytes."""
    pdf = client.get(attached["downloadUrl"])
    assert pdf.status_code == 200 and pdf.content == b"%PDF-1.4 fake"
    assert pdf.headers["content-disposition"].startswith("attachment;")
    assert pdf.headers["x-content-type-options"] == "nosniff"
    assert pdf.headers["content-security-policy"].startswith("sandbox")
    assert client.get(f"/messages/{ident}/attachment/ATTACH000009").status_code == 404
    eml = client.get(f"/messages/{ident}/download")
    assert eml.status_code == 200
    assert eml.headers["content-type"] == "message/rfc822"
    assert eml.headers["content-disposition"] == f'attachment; filename="{ident}.eml"'
    assert eml.headers["content-security-policy"].startswith("sandbox")
    return eml.content


def test_read_mark_download_delete(stack):
    with stack.client() as client:
        _, token = account(client, "bob@example.com")
    raw = mail(
        "Bob <bob@example.com>",
        subject="Greetings",
        text="Hello Bob,\nthis is the text part.",
        html='<p onclick="steal()">Hello <b>Bob</b><script>steal()</script>'
        '<img src="https://tracker.test/p.gif" alt="pixel"></p>',
        attachments=(("report.pdf", "application/pdf", b"%PDF-1.4 fake"),),
    )
    sent_id = send(stack.smtp.port, ["bob@example.com"], raw)
    with stack.client(token) as client:
        [summary] = wait_messages(client, 1)
        ident = summary["id"]
        assert summary["subject"] == "Greetings"
        assert summary["from"] == {"name": "Alice Sender", "address": "alice@sender.test"}
        assert summary["to"] == [{"name": "Bob", "address": "bob@example.com"}]
        assert summary["intro"] == "Hello Bob, this is the text part."
        assert summary["seen"] is False and summary["hasAttachments"] is True
        size = query(stack.database_url, "SELECT size FROM emails WHERE id = $1", uuid.UUID(ident))
        assert summary["size"] == size[0][0] > 0
        assert summary["downloadUrl"] == f"{stack.api.url}/messages/{ident}/download"

        attached = check_full_message(client, ident)
        eml = check_downloads(client, ident, attached)
        assert as_sent(eml) == raw
        stored = query(stack.database_url, "SELECT raw FROM raw_messages WHERE id = $1", sent_id)
        assert eml == stored[0][0]

        source = client.get(f"/sources/{ident}").json()
        assert source["id"] == ident and "Subject: Greetings" in source["data"]
        assert source["downloadUrl"].endswith(f"/messages/{ident}/download")

        merge = {"Content-Type": "application/merge-patch+json"}
        patched = client.patch(f"/messages/{ident}", content=b'{"seen": true}', headers=merge)
        assert patched.status_code == 200 and patched.json()["seen"] is True
        assert wait_messages(client, 1)[0]["seen"] is True
        wrong_type = client.patch(
            f"/messages/{ident}", content=b'{"seen": true}', headers={"Content-Type": "text/plain"}
        )
        assert wrong_type.status_code == 415

        assert client.delete(f"/messages/{ident}").status_code == 204
        assert client.get(f"/messages/{ident}").status_code == 404
        assert client.get(f"/messages/{ident}/download").status_code == 404
        assert client.get("/messages").json()["hydra:totalItems"] == 0
    assert query(stack.database_url, "SELECT count(*) FROM raw_messages")[0][0] == 0
    # The unsanitised HTML stays in the table untouched (until deleted).


def test_pagination_past_30(stack):
    with stack.client() as client:
        _, token = account(client, "many@example.com")
    send_many(stack.smtp.port, "many@example.com", 35)
    with stack.client(token) as client:
        wait_messages(client, 35)
        first = client.get("/messages").json()
        assert first["hydra:totalItems"] == 35
        assert len(first["hydra:member"]) == 30
        assert first["hydra:member"][0]["subject"] == "m-34"  # newest first
        assert first["hydra:view"] == {
            "@id": "/messages?page=1",
            "@type": "hydra:PartialCollectionView",
            "hydra:first": "/messages?page=1",
            "hydra:last": "/messages?page=2",
            "hydra:next": "/messages?page=2",
        }
        second = client.get("/messages", params={"page": 2}).json()
        assert [m["subject"] for m in second["hydra:member"]] == [
            f"m-{n}" for n in range(4, -1, -1)
        ]
        assert second["hydra:view"]["hydra:previous"] == "/messages?page=1"
        assert "hydra:next" not in second["hydra:view"]
        plain = client.get("/messages", params={"page": 2}, headers={"Accept": "application/json"})
        assert plain.headers["content-type"] == JSON and len(plain.json()) == 5
        assert client.get("/messages", params={"page": 3}).json()["hydra:member"] == []
        assert client.get("/messages", params={"page": 0}).status_code == 400


def test_delete_keeps_a_raw_message_another_row_needs(stack):
    with stack.client() as client:
        _, one = account(client, "one@example.com")
        _, two = account(client, "two@example.com")
    send(stack.smtp.port, ["one@example.com", "two@example.com"], mail("one@example.com"))
    with stack.client(one) as first, stack.client(two) as second:
        [a] = wait_messages(first, 1)
        [b] = wait_messages(second, 1)
        assert first.delete(f"/messages/{a['id']}").status_code == 204
        assert query(stack.database_url, "SELECT count(*) FROM raw_messages")[0][0] == 1
        assert second.get(f"/messages/{b['id']}/download").status_code == 200
        assert second.delete(f"/messages/{b['id']}").status_code == 204
    assert query(stack.database_url, "SELECT count(*) FROM raw_messages")[0][0] == 0


def test_rows_written_by_the_cybertemp_server(stack):
    """No raw message, no header_to (received_at is filled by migration 002): still
    listed and read."""
    with stack.client() as client:
        _, token = account(client, "old@example.com")
    query(
        stack.database_url,
        "INSERT INTO emails (id, mailbox_owner, subject, body, html, from_addr, to_addrs, "
        "created_at) VALUES ($1, 'old@example.com', 'From before', 'old text', "
        "NULL, 'someone@sender.test', ARRAY['old@example.com'], now())",
        uuid.uuid4(),
    )
    with stack.client(token) as client:
        [row] = wait_messages(client, 1)
        assert row["to"] == [{"name": "", "address": "old@example.com"}]
        assert row["from"] == {"name": "", "address": "someone@sender.test"}
        full = client.get(f"/messages/{row['id']}").json()
        assert full["html"] == [] and full["text"] == "old text" and full["attachments"] == []
        assert client.get(f"/messages/{row['id']}/download").status_code == 404


def test_rate_limit_per_client_address(make_stack):
    stack = make_stack(api_rate_limit="0.5")  # a burst of 1, then one every 2 s
    # Fresh client addresses (the readiness probe came from 127.0.0.1).
    one = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=stack.api.url, transport=one) as client:
        assert client.get("/domains").status_code == 200
        limited = client.get("/domains")
        assert limited.status_code == 429
        assert limited.json()["code"] == 429
        assert limited.headers["retry-after"] == "1"
    other = httpx.HTTPTransport(local_address="127.0.0.3")
    with httpx.Client(base_url=stack.api.url, transport=other) as elsewhere:
        assert elsewhere.get("/domains").status_code == 200
