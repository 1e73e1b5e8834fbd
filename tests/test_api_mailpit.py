"""The per-address Mailpit v1 subset end to end."""

from __future__ import annotations

import time

from .api_fixtures import make_stack, stack
from .api_helpers import mail, send
from .helpers import as_sent, query

BASE = "/mailpit/box@example.com/api/v1"


def wait_total(client, count: int, path: str = f"{BASE}/messages") -> dict:
    deadline = time.monotonic() + 30
    while True:
        body = client.get(path).json()
        if body["total"] >= count:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def fill(stack) -> None:
    port = stack.smtp.port
    invoice = mail(
        "box@example.com",
        subject="invoice 42",
        sender="Billing <billing@shop.test>",
        attachments=(("inv.pdf", "application/pdf", b"%PDF"),),
    )
    send(port, ["box@example.com"], invoice)
    welcome = mail(
        "box@example.com",
        subject="Welcome aboard",
        text="your code is 123456",
        html="<p>your <b>code</b></p>",
    )
    send(port, ["box@example.com"], welcome)
    newsletter = mail("Box <box@example.com>", subject="newsletter")
    send(port, ["box@example.com", "other@example.com"], newsletter)


def test_list_and_paginate(stack):
    fill(stack)
    with stack.client() as client:
        body = wait_total(client, 3)
        assert body["total"] == 3 and body["unread"] == 3 and body["count"] == 3
        assert body["messages_count"] == 3 and body["start"] == 0 and body["tags"] == []
        assert [m["Subject"] for m in body["messages"]] == [
            "newsletter",
            "Welcome aboard",
            "invoice 42",
        ]
        first = body["messages"][2]
        assert first["From"] == {"Name": "Billing", "Address": "billing@shop.test"}
        assert first["To"] == [{"Name": "", "Address": "box@example.com"}]
        assert first["Attachments"] == 1 and first["Read"] is False
        assert first["Cc"] == [] and first["Bcc"] == [] and first["ReplyTo"] == []
        assert first["Created"].endswith("Z") and isinstance(first["Size"], int)
        assert first["Snippet"] == "hello there"
        assert body["messages"][1]["Snippet"] == "your code is 123456"
        page = client.get(f"{BASE}/messages", params={"start": 1, "limit": 1}).json()
        assert page["count"] == 1 and page["start"] == 1 and page["total"] == 3
        assert page["messages"][0]["Subject"] == "Welcome aboard"
        assert client.get(f"{BASE}/messages").headers["content-type"].startswith("application/json")


def test_search(stack):
    fill(stack)
    with stack.client() as client:
        wait_total(client, 3)

        def subjects(q: str) -> list[str]:
            answer = client.get(f"{BASE}/search", params={"query": q})
            assert answer.status_code == 200, answer.text
            return [m["Subject"] for m in answer.json()["messages"]]

        assert subjects("subject:invoice") == ["invoice 42"]
        assert subjects('subject:"welcome aboard"') == ["Welcome aboard"]
        assert subjects("from:billing@shop.test") == ["invoice 42"]
        assert subjects("from:Billing") == ["invoice 42"]
        assert subjects("to:box@example.com") == ["newsletter", "Welcome aboard", "invoice 42"]
        assert subjects("has:attachment") == ["invoice 42"]
        assert subjects("-has:attachment") == ["newsletter", "Welcome aboard"]
        assert subjects("123456") == ["Welcome aboard"]  # free text: the body too
        assert subjects("!subject:invoice welcome") == ["Welcome aboard"]
        assert subjects("is:unread") == ["newsletter", "Welcome aboard", "invoice 42"]
        latest = client.get(f"{BASE}/message/latest").json()  # marks it read
        assert latest["Subject"] == "newsletter"
        assert subjects("is:read") == ["newsletter"]
        assert subjects("is:unread") == ["Welcome aboard", "invoice 42"]
        found = client.get(f"{BASE}/search", params={"query": "is:unread"}).json()
        assert found["messages_count"] == 2 and found["total"] == 3 and found["unread"] == 2
        # Each term is one more ILIKE: a query's terms are bounded (review: 20,000
        # terms held a database connection for 20 s).
        assert subjects(" ".join(["welcome"] * 20)) == ["Welcome aboard"]
        many = client.get(f"{BASE}/search", params={"query": " ".join(["a"] * 21)})
        assert (many.status_code, many.text) == (400, "Error: at most 20 search terms")
        assert subjects("100%_") == []  # LIKE wildcards are literal
        assert client.get(f"{BASE}/search").status_code == 400


def test_message_raw_headers_part(stack):
    fill(stack)
    with stack.client() as client:
        body = wait_total(client, 3)
        ident = body["messages"][2]["ID"]
        message = client.get(f"{BASE}/message/{ident}").json()
        assert message["ID"] == ident and message["Subject"] == "invoice 42"
        assert message["Text"] == "hello there\r\n" or message["Text"].startswith("hello there")
        assert message["HTML"] == "" and message["Inline"] == []
        assert message["ReturnPath"] == "alice@sender.test"
        assert message["Date"] == "2026-11-30T10:00:00.000Z"
        [attached] = message["Attachments"]
        assert attached["FileName"] == "inv.pdf" and attached["ContentType"] == "application/pdf"
        assert attached["Size"] == 4 and attached["PartID"] == "2"
        assert client.get(f"{BASE}/messages").json()["messages"][2]["Read"] is True

        part = client.get(f"{BASE}/message/{ident}/part/{attached['PartID']}")
        assert part.status_code == 200 and part.content == b"%PDF"
        assert part.headers["content-disposition"].startswith("attachment")
        assert part.headers["x-content-type-options"] == "nosniff"
        assert client.get(f"{BASE}/message/{ident}/part/9").status_code == 404

        raw = client.get(f"{BASE}/message/{ident}/raw")
        assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/plain")
        assert raw.headers["content-disposition"].startswith("attachment")
        assert raw.headers["content-security-policy"].startswith("sandbox")
        assert b"Subject: invoice 42" in as_sent(raw.content)

        headers = client.get(f"{BASE}/message/{ident}/headers").json()
        assert headers["Subject"] == ["invoice 42"]
        assert headers["Message-Id"][0].endswith("@sender.test>")  # Go's canonical names
        assert headers["Content-Type"][0].startswith("multipart/mixed")
        assert len(headers["Received"]) == 1

        html = client.get(f"{BASE}/message/{body['messages'][1]['ID']}").json()
        assert html["HTML"].strip() == "<p>your <b>code</b></p>"


def test_put_read_and_delete(stack):
    fill(stack)
    with stack.client() as client:
        body = wait_total(client, 3)
        ids = [m["ID"] for m in body["messages"]]
        put = client.put(f"{BASE}/messages", json={"IDs": ids[:1], "Read": True})
        assert put.status_code == 200 and put.text == "ok"
        assert client.get(f"{BASE}/messages").json()["unread"] == 2
        assert client.put(f"{BASE}/messages", json={"Read": True}).text == "ok"  # all
        assert client.get(f"{BASE}/messages").json()["unread"] == 0
        client.put(f"{BASE}/messages", data={"ids": ids[1:], "Read": "false"})  # form body
        assert client.get(f"{BASE}/messages").json()["unread"] == 2

        deleted = client.request("DELETE", f"{BASE}/messages", json={"IDs": ids[:1]})
        assert deleted.status_code == 200 and deleted.text == "ok"
        assert client.get(f"{BASE}/messages").json()["total"] == 2
        # The newsletter also went to other@: its raw message stays for that row.
        assert query(stack.database_url, "SELECT count(*) FROM raw_messages")[0][0] == 3
        assert client.delete(f"{BASE}/messages").text == "ok"  # no body: all of box@
        assert client.get(f"{BASE}/messages").json()["total"] == 0
        other = client.get("/mailpit/other@example.com/api/v1/messages").json()
        assert other["total"] == 1
    assert query(stack.database_url, "SELECT count(*) FROM raw_messages")[0][0] == 1
