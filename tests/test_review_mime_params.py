"""Review of issue 21 item 2 (bounded parsing): a MIME part's parameters.

The standard library splits a Content-Type or Content-Disposition value
into parameters (email.message._parseparam) in quadratic time when a quote
is left open: `a="` then 250,000 `;` took 590 s in parse.parse() on a busy
machine (CPython gh-136063). Such a part header lives in the body, where
parse.parses_slowly counts nothing of it, so a 250 KB message was parsed on
the SMTP event loop: every session, greeting and reply stood still for
minutes. The parameters are now split in linear time (app/mimeparams.py),
for the SMTP service and the API alike (whose parses, in its worker
processes, have no time bound: one such message held a worker for hours).

No timing is asserted: the client's timeout catches a quadratic split.
"""

from __future__ import annotations

import smtplib

from .api_fixtures import make_stack, stack  # noqa: F401  (fixtures)
from .api_helpers import send
from .helpers import query
from .test_api_mailpit import BASE, wait_total


def hostile(marker: bytes, semicolons: int = 250_000, to: bytes = b"r@example.com") -> bytes:
    open_quote = b'; name="' + b";" * semicolons
    return (
        b"From: s@sender.test\r\nTo: " + to + b"\r\nSubject: " + marker + b"\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: text/plain\r\n\r\nthe text\r\n"
        b"--B\r\nContent-Type: application/octet-stream" + open_quote + b"\r\n"
        b"Content-Disposition: attachment; filename=f.bin" + open_quote + b"\r\n\r\n"
        b"data\r\n--B--\r\n"
    )


def test_a_part_with_an_open_quote_and_many_semicolons_parses_at_once(make_server, database_url):
    server = make_server()  # durable: the 250 waits for the parse and the commit
    with smtplib.SMTP("127.0.0.1", server.port, timeout=60) as client:
        client.sendmail("s@sender.test", ["r@example.com"], hostile(b"open-quote"))
    with smtplib.SMTP("127.0.0.1", server.port, timeout=60) as client:
        client.sendmail("s@sender.test", ["r@example.com"], b"Subject: after\r\n\r\nplain")
    rows = query(database_url, "SELECT subject, body FROM emails ORDER BY subject")
    assert [(r["subject"], r["body"].strip()) for r in rows] == [
        ("after", "plain"),
        ("open-quote", "the text"),
    ]


def test_the_api_lists_the_parts_of_such_a_message(stack):  # noqa: F811
    # 1 MB: parsed by the API's worker processes (and the SMTP service's parser processes).
    send(stack.smtp.port, ["box@example.com"], hostile(b"api", 1_000_000, b"box@example.com"))
    with stack.client() as client:  # 30 s timeout
        [listed] = wait_total(client, 1)["messages"]
        answer = client.get(f"{BASE}/message/{listed['ID']}")
    assert answer.status_code == 200
    assert [a["FileName"] for a in answer.json()["Attachments"]] == ["f.bin"]
