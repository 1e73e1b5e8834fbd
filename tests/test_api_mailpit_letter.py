"""Mailpit's API to the letter (issue 27, points 1-7): each behaviour as
Mailpit's Go handlers (server/apiv1/) answer it, through the real SMTP
service and `python -m app api`."""

from __future__ import annotations

from .api_fixtures import make_stack, stack
from .api_helpers import mail, send
from .test_api_mailpit import BASE, wait_total

# A message with no From header, sent with a null envelope sender (a bounce).
NO_FROM = (
    b"To: box@example.com\r\nSubject: bounce\r\nMessage-ID: <b1@x.test>\r\n"
    b"Date: Mon, 30 Nov 2026 10:00:00 +0000\r\n\r\nundeliverable\r\n"
)


def test_from_is_always_an_address(stack):
    """Point 1: Mailpit's From is an address object, never null (empty
    Name and Address when the message has none)."""
    send(stack.smtp.port, ["box@example.com"], NO_FROM, sender="")
    with stack.client() as client:
        [summary] = wait_total(client, 1)["messages"]
        assert summary["From"] == {"Name": "", "Address": ""}
        found = client.get(f"{BASE}/search", params={"query": "bounce"}).json()
        assert found["messages"][0]["From"] == {"Name": "", "Address": ""}
        message = client.get(f"{BASE}/message/{summary['ID']}").json()
        assert message["From"] == {"Name": "", "Address": ""}


def fill_three(stack) -> list[dict]:
    """Three messages, the oldest with an attachment; the list, newest first."""
    port = stack.smtp.port
    pdf = (("inv.pdf", "application/pdf", b"%PDF"),)
    send(port, ["box@example.com"], mail("box@example.com", subject="invoice", attachments=pdf))
    send(port, ["box@example.com"], mail("box@example.com", subject="welcome"))
    send(port, ["box@example.com"], mail("box@example.com", subject="news"))
    with stack.client() as client:
        return wait_total(client, 3)["messages"]


def test_put_messages_applies_search_and_refuses_bad_bodies(stack):
    """Points 2 and 3: `Search` marks only its matches; an empty body, or IDs
    and Search together, is a 400 in text/plain and changes nothing."""
    listed = fill_three(stack)
    with stack.client() as client:
        marked = client.put(f"{BASE}/messages", json={"Search": "has:attachment", "Read": True})
        assert marked.status_code == 200 and marked.text == "ok"
        after = client.get(f"{BASE}/messages").json()
        assert after["unread"] == 2
        assert [m["Read"] for m in after["messages"]] == [False, False, True]

        for body in (b"", b"   ", b"[1]", b'{"Read": "yes"}', b'{"IDs": "x"}', b"{oops"):
            refused = client.put(f"{BASE}/messages", content=body)
            assert refused.status_code == 400, body
            assert refused.headers["content-type"].startswith("text/plain"), body
        both = client.put(f"{BASE}/messages", json={"IDs": [listed[0]["ID"]], "Search": "news"})
        assert both.status_code == 400
        assert both.text == "You may specify either IDs or a search query, not both"
        assert client.get(f"{BASE}/messages").json()["unread"] == 2  # nothing changed
        # Mailpit decodes `null` into an empty request: every message, Read false.
        assert client.put(f"{BASE}/messages", content=b"null").text == "ok"
        assert client.get(f"{BASE}/messages").json()["unread"] == 3


def test_limit_zero_means_no_limit(stack):
    """Point 4: ?limit=0 lists every message (up to the documented cap)."""
    fill_three(stack)
    with stack.client() as client:
        everything = client.get(f"{BASE}/messages", params={"limit": 0}).json()
        assert everything["count"] == 3 and len(everything["messages"]) == 3
        found = client.get(f"{BASE}/search", params={"query": "box", "limit": 0}).json()
        assert len(found["messages"]) == 3
        one = client.get(f"{BASE}/messages", params={"limit": 1, "start": "x"}).json()
        assert len(one["messages"]) == 1 and one["start"] == 0
        # As Go's strconv.Atoi: a number past 64 bits is no number (the default).
        huge = client.get(f"{BASE}/messages", params={"start": "9" * 30, "limit": "9" * 30})
        assert huge.status_code == 200 and huge.json()["start"] == 0
        assert len(huge.json()["messages"]) == 3


def test_html_view_of_a_message_without_html_is_404(stack):
    """Point 5: /view/{ID}.html answers 404 with Mailpit's text when the
    message has no HTML part, or when there is no such message."""
    [summary] = fill_three(stack)[:1]
    view = "/mailpit/box@example.com/view"
    with stack.client() as client:
        answer = client.get(f"{view}/{summary['ID']}.html")
        assert answer.status_code == 404
        assert answer.text == "This message does not contain a HTML part"
        missing = client.get(f"{view}/00000000-0000-0000-0000-000000000000.html")
        assert missing.status_code == 404 and missing.text == "Message not found"


# A message with every kind of leaf Mailpit sorts (enmime's envelope rules).
PARTS = b"""From: Alice <alice@sender.test>\r
To: box@example.com\r
Subject: parts\r
MIME-Version: 1.0\r
Content-Type: multipart/mixed; boundary="outer"\r
\r
--outer\r
Content-Type: multipart/related; boundary="rel"\r
\r
--rel\r
Content-Type: text/html\r
\r
<p>logo: <img src="cid:logo1"></p>\r
--rel\r
Content-Type: image/png\r
Content-ID: <logo1>\r
Content-Transfer-Encoding: base64\r
\r
iVBORw0KGgo=\r
--rel--\r
--outer\r
Content-Type: text/plain\r
\r
a second, nameless text leaf\r
--outer\r
Content-Type: multipart/alternative; boundary="empty"\r
\r
--empty--\r
--outer\r
Content-Type: application/octet-stream\r
\r
nameless bytes\r
--outer\r
Content-Type: application/pdf; name="a.pdf"\r
Content-Disposition: attachment; filename="a.pdf"\r
\r
%PDF\r
--outer\r
Content-Type: image/gif\r
Content-Disposition: attachment\r
Content-ID: <only-cid>\r
\r
GIF89a\r
--outer--\r
"""


def test_attachments_and_inline_as_mailpit_lists_them(stack):
    """Point 6: only parts with a file name or a Content-ID are listed;
    attachments by disposition, the Content-ID image under Inline."""
    send(stack.smtp.port, ["box@example.com"], PARTS)
    with stack.client() as client:
        [summary] = wait_total(client, 1)["messages"]
        message = client.get(f"{BASE}/message/{summary['ID']}").json()
        assert [(a["PartID"], a["FileName"]) for a in message["Attachments"]] == [
            ("5", "a.pdf"),
            ("6", "only-cid"),  # Mailpit names a nameless part by its Content-ID
        ]
        [inline] = message["Inline"]
        assert inline["PartID"] == "1.2" and inline["ContentID"] == "logo1"
        assert inline["ContentType"] == "image/png" and inline["FileName"] == "logo1"
        assert set(inline["Checksums"]) == {"MD5", "SHA1", "SHA256"}
        png = client.get(f"{BASE}/message/{summary['ID']}/part/1.2")
        assert png.status_code == 200 and png.content == b"\x89PNG\r\n\x1a\n"


def test_errors_on_mailpit_routes_are_text(make_stack):
    """Point 7: every error a Mailpit route answers is text/plain, as
    Mailpit's handlers write them; mail.tm routes keep their JSON."""
    stack = make_stack(api_rate_limit="20")
    with stack.client() as client:
        for method, path in (
            ("GET", f"{BASE}/search?query=%00"),
            ("GET", f"{BASE}/nothing-here"),
            ("POST", f"{BASE}/messages"),
            ("PUT", f"{BASE}/messages"),
        ):
            kwargs = {"content": b"x" * 70_000} if method == "PUT" else {}
            answer = client.request(method, path, **kwargs)
            assert answer.status_code in (400, 404, 405, 413), (path, answer.status_code)
            assert answer.headers["content-type"].startswith("text/plain"), (path, answer.text)
        assert client.get(f"{BASE}/nothing-here").text == "404 page not found"
        assert (
            client.get("/messages?x=%00").headers["content-type"].startswith("application/ld+json")
        )
        for _ in range(100):
            answer = client.get(f"{BASE}/messages")
            if answer.status_code == 429:
                break
        assert answer.status_code == 429
        assert answer.headers["content-type"].startswith("text/plain")
