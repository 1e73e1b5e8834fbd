"""The rest of Mailpit's per-mailbox API (issue 27), each route as Mailpit's
Go handlers answer it (server/apiv1/tags.go, messages.go, testing.go,
thumbnails.go, application.go, other.go, release.go, send.go, chaos.go),
through the real SMTP service and `python -m app api`."""

from __future__ import annotations

import io

from PIL import Image

from .api_fixtures import make_stack, stack
from .api_helpers import mail, send
from .test_api_mailpit import BASE, wait_total


def fill(stack) -> dict[str, str]:
    """Three messages to box@ (one with a PNG and a PDF), one to other@; subject -> ID."""
    png = io.BytesIO()
    Image.new("RGB", (400, 300), "red").save(png, "PNG")
    files = (("red.png", "image/png", png.getvalue()), ("a.pdf", "application/pdf", b"%PDF"))
    port = stack.smtp.port
    send(port, ["box@example.com"], mail("box@example.com", subject="invoice", attachments=files))
    send(port, ["box@example.com"], mail("box@example.com", subject="welcome"))
    send(port, ["box@example.com", "other@example.com"], mail("box@example.com", subject="news"))
    with stack.client() as client:
        listed = wait_total(client, 3)["messages"]
        wait_total(client, 1, "/mailpit/other@example.com/api/v1/messages")
    return {m["Subject"]: m["ID"] for m in listed}


def tags_of(client, ident: str) -> list[str]:
    return client.get(f"{BASE}/message/{ident}").json()["Tags"]


def subjects(client, query: str) -> list[str]:
    answer = client.get(f"{BASE}/search", params={"query": query})
    assert answer.status_code == 200, answer.text
    return sorted(m["Subject"] for m in answer.json()["messages"])


def test_tags(stack):
    ids = fill(stack)
    with stack.client() as client:
        assert client.get(f"{BASE}/tags").json() == []
        both = [ids["invoice"], ids["welcome"]]
        # Cleaned as Mailpit's CleanTag, the invalid and repeated (any case) left out.
        put = client.put(
            f"{BASE}/tags", json={"Tags": ["Work", "urgent!", "work", ""], "IDs": both}
        )
        assert put.status_code == 200 and put.text == "ok"
        assert tags_of(client, ids["invoice"]) == ["urgent", "Work"]
        assert client.get(f"{BASE}/tags").json() == ["urgent", "Work"]  # Mailpit's NOCASE order
        listed = client.get(f"{BASE}/messages").json()
        assert listed["tags"] == ["urgent", "Work"]
        assert {m["Subject"]: m["Tags"] for m in listed["messages"]}["news"] == []
        # A tag in another case takes the spelling the address has.
        client.put(f"{BASE}/tags", json={"Tags": ["WORK"], "IDs": [ids["news"]]})
        assert tags_of(client, ids["news"]) == ["Work"]
        assert subjects(client, "tag:work") == ["invoice", "news", "welcome"]
        assert subjects(client, "tag:urgent -subject:invoice") == ["welcome"]
        assert subjects(client, "-is:tagged") == []
        info = client.get(f"{BASE}/info").json()
        assert info["Tags"] == {"Work": 3, "urgent": 2}

        # Rename: Mailpit's RenameTag and its refusals (400, text/plain).
        def rename(tag: str, name: object) -> tuple[int, str]:
            answer = client.put(f"{BASE}/tags/{tag}", json={"Name": name})
            return answer.status_code, answer.text

        assert rename("Work", "urgent") == (400, "tag already exists: urgent")
        assert rename("nope", "x") == (400, "tag not found: nope")
        assert rename("Work", "!!!") == (400, "invalid tag name: ")
        assert rename("Work", 5)[0] == 400
        assert rename("work", "Job") == (200, "ok")
        assert client.get(f"{BASE}/tags").json() == ["Job", "urgent"]
        assert rename("Job", "JOB") == (200, "ok")  # a change of case is the same tag
        assert tags_of(client, ids["invoice"]) == ["JOB", "urgent"]

        # Delete: off every message, the mail stays.
        assert client.delete(f"{BASE}/tags/URGENT").text == "ok"
        assert client.get(f"{BASE}/tags").json() == ["JOB"]
        gone = client.delete(f"{BASE}/tags/urgent")
        assert gone.status_code == 400 and gone.text == "tag not found: urgent"
        assert client.get(f"{BASE}/messages").json()["total"] == 3
        # Empty Tags clear a message's tags; a bad body is a 400.
        client.put(f"{BASE}/tags", json={"Tags": [], "IDs": [ids["news"]]})
        assert tags_of(client, ids["news"]) == []
        assert client.put(f"{BASE}/tags", content=b"").status_code == 400
        assert client.put(f"{BASE}/tags", json={"Tags": "x", "IDs": []}).status_code == 400
        # Per address: the other recipient of "news" has no tags.
        assert client.get("/mailpit/other@example.com/api/v1/tags").json() == []


def test_delete_search_view_text_and_latest_by_query(stack):
    ids = fill(stack)
    with stack.client() as client:
        latest = client.get(f"{BASE}/message/latest", params={"query": "subject:welcome"})
        assert latest.json()["ID"] == ids["welcome"]
        none = client.get(f"{BASE}/message/latest", params={"query": "subject:nothing"})
        assert none.status_code == 404 and none.text == "Message not found"

        view = "/mailpit/box@example.com/view"
        txt = client.get(f"{view}/{ids['welcome']}.txt")
        assert txt.status_code == 200 and txt.text.startswith("hello there")
        assert txt.headers["content-type"] == "text/plain; charset=utf-8"
        assert client.get(f"{view}/latest.txt").text.startswith("hello there")
        missing = client.get(f"{view}/00000000-0000-0000-0000-000000000000.txt")
        assert missing.status_code == 404 and missing.text == "Message not found"

        assert client.delete(f"{BASE}/search").status_code == 400  # Error: no search query
        deleted = client.delete(f"{BASE}/search", params={"query": "subject:news"})
        assert deleted.status_code == 200 and deleted.text == "ok"
        assert subjects(client, "box") == ["invoice", "welcome"]
        assert client.get("/mailpit/other@example.com/api/v1/messages").json()["total"] == 1


def test_part_thumbnails(stack):
    ids = fill(stack)
    with stack.client() as client:
        message = client.get(f"{BASE}/message/{ids['invoice']}").json()
        parts = {a["FileName"]: a["PartID"] for a in message["Attachments"]}
        base = f"{BASE}/message/{ids['invoice']}/part"
        for name, colour in (("red.png", (254, 0, 0)), ("a.pdf", (255, 255, 255))):
            thumb = client.get(f"{base}/{parts[name]}/thumb")
            assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
            image = Image.open(io.BytesIO(thumb.content))
            assert image.format == "JPEG" and image.size == (180, 120)
            assert all(
                abs(a - b) <= 2 for a, b in zip(image.getpixel((90, 60)), colour, strict=True)
            )
        absent = client.get(f"{base}/9/thumb")
        assert absent.status_code == 400 and absent.headers["content-type"].startswith("text/plain")


def test_info_webui_and_what_is_off(stack):
    fill(stack)
    with stack.client() as client:
        info = client.get(f"{BASE}/info").json()
        assert info["Messages"] == 3 and info["Unread"] == 3 and info["DatabaseSize"] > 0
        assert info["LatestVersion"] == "disabled" and info["Database"] == ""
        assert info["RuntimeStats"]["Uptime"] >= 0 and info["Tags"] == {}
        webui = client.get(f"{BASE}/webui").json()
        assert webui["Label"] == "box@example.com"
        assert webui["MessageRelay"]["Enabled"] is False and webui["SpamAssassin"] is False
        assert webui["ChaosEnabled"] is False

        ident = client.get(f"{BASE}/messages").json()["messages"][0]["ID"]
        for method, path, status, kind, body in (
            ("GET", f"message/{ident}/sa-check", 404, "text/plain", "File not found\n"),
            ("GET", f"message/{ident}/html-check", 400, "text/plain", None),
            ("GET", f"message/{ident}/link-check", 400, "text/plain", None),
            ("POST", f"message/{ident}/release", 400, "text/plain", None),
            ("POST", "send", 400, "application/json", None),
            ("GET", "chaos", 400, "text/plain", "Chaos is not enabled"),
            ("PUT", "chaos", 400, "text/plain", "Chaos is not enabled"),
        ):
            answer = client.request(method, f"{BASE}/{path}", json={})
            assert answer.status_code == status, path
            assert answer.headers["content-type"].startswith(kind), path
            assert body is None or answer.text == body, path
        assert "Error" in client.post(f"{BASE}/send", json={}).json()


def test_claimed_address_guards_the_new_routes(make_stack):
    stack = make_stack()
    with stack.client() as client:
        created = client.post(
            "/accounts", json={"address": "box@example.com", "password": "secret-pass"}
        )
        assert created.status_code == 201
        for method, path in (
            ("GET", "tags"),
            ("PUT", "tags"),
            ("DELETE", "tags/x"),
            ("GET", "info"),
            ("GET", "webui"),
            ("DELETE", "search?query=x"),
            ("GET", "chaos"),
        ):
            answer = client.request(method, f"{BASE}/{path}")
            assert answer.status_code == 401, (method, path)
