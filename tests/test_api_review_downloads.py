"""Review finding: attachment downloads broke on what senders write.

A filename outside Latin-1 (`счёт №1.pdf`) made the download a 500: the name
went into Content-Disposition as it was, and header values are Latin-1. A
Content-Type folded across lines (`application/\\r\\n pdf`) was sent on with
its CR LF, splitting the response's header, and the client lost the
connection. Both download routes (Mailpit's part, mail.tm's attachment) now
send RFC 6266's pair of names and one clean media type.
"""

from __future__ import annotations

from urllib.parse import unquote

import httpx

from .api_fixtures import make_stack, stack
from .api_helpers import account, send, wait_messages

RCPT = "files@example.com"
NAME = "счёт №1.pdf"
# Built by hand: the email package would never fold a Content-Type like this.
RAW = (
    "From: Alice <alice@sender.test>\r\n"
    f"To: {RCPT}\r\n"
    "Subject: files\r\n"
    "Message-ID: <files@sender.test>\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: multipart/mixed; boundary="b"\r\n'
    "\r\n"
    "--b\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "see attached\r\n"
    "--b\r\n"
    "Content-Type: application/pdf\r\n"
    "Content-Disposition: attachment;\r\n"
    " filename*=UTF-8''%D1%81%D1%87%D1%91%D1%82%20%E2%84%961.pdf\r\n"
    "\r\n"
    "%PDF-1\r\n"
    "--b\r\n"
    "Content-Type: application/\r\n"
    ' pdf; name="folded.pdf"\r\n'
    "Content-Disposition: attachment; filename=folded.pdf\r\n"
    "\r\n"
    "%PDF-2\r\n"
    "--b\r\n"
    "Content-Type: text/pl(ai)n\r\n"
    "Content-Disposition: attachment; filename=odd.txt\r\n"
    "\r\n"
    "odd\r\n"
    "--b\r\n"
    "Content-Type: application/octet-stream\r\n"
    'Content-Disposition: attachment; filename="=?utf-8?b?0L/RgNC40LLQtdGCLnR4dA==?="\r\n'
    "\r\n"
    "encoded-word name\r\n"
    "--b\r\n"
    "Content-Type: text/plain; charset=windows-1251\r\n"
    "Content-Disposition: attachment; filename=cp1251.txt\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "7/Do4uXy\r\n"
    "--b--\r\n"
).encode()
# What each attachment must download as: (name, media type, bytes).
EXPECTED = [
    (NAME, "application/pdf", b"%PDF-1"),
    ("folded.pdf", "application/pdf", b"%PDF-2"),
    ("odd.txt", "application/octet-stream", b"odd"),
    # RFC 2047 encoded words, as many mail programs write a name (second review)
    ("привет.txt", "application/octet-stream", b"encoded-word name"),
    # a text part downloads with the charset it declared, not as UTF-8
    ("cp1251.txt", "text/plain; charset=windows-1251", "привет".encode("cp1251")),
]
LISTED_TYPES = [t.split(";")[0] for _, t, _ in EXPECTED]


def check(answer: httpx.Response, name: str, media_type: str, data: bytes) -> None:
    assert answer.status_code == 200, answer.text
    assert answer.content == data
    assert answer.headers["content-type"] == media_type
    disposition = answer.headers["content-disposition"]
    assert disposition.isascii() and "\r" not in disposition and "\n" not in disposition
    assert disposition.startswith('attachment; filename="')
    if name.isascii():
        assert disposition == f'attachment; filename="{name}"'
    else:
        encoded = disposition.split("; filename*=UTF-8''", 1)[1]
        assert unquote(encoded) == name


def test_attachment_names_and_types_download_cleanly(stack):
    with stack.client() as client:
        _, token = account(client, RCPT)
    send(stack.smtp.port, [RCPT], RAW)
    with stack.client(token) as client:
        [message] = wait_messages(client, 1)
        full = client.get(f"/messages/{message['id']}").json()
        assert [a["filename"] for a in full["attachments"]] == [n for n, _, _ in EXPECTED]
        assert [a["contentType"] for a in full["attachments"]] == LISTED_TYPES
        for listed, (name, media_type, data) in zip(full["attachments"], EXPECTED, strict=True):
            check(client.get(listed["downloadUrl"]), name, media_type, data)

        base = f"/mailpit/{RCPT}/api/v1/message/{message['id']}"
        detail = client.get(base).json()
        assert [a["ContentType"] for a in detail["Attachments"]] == LISTED_TYPES
        for attached, (name, media_type, data) in zip(detail["Attachments"], EXPECTED, strict=True):
            check(client.get(f"{base}/part/{attached['PartID']}"), name, media_type, data)
