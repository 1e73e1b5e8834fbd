"""Review of issue 23: the content checks judge at most LINKS_JUDGED (1000)
links of a message. Each link costs Python work on the event loop (messages
up to 1 MiB are judged there): 17,500 deceptive look-alike anchors in a
0.99 MB message held every session of the worker for 2.4 s (a concurrent
greeting waited that long; measured, not asserted), 0.15 s now. The bound
shows in the verdict: a deceptive link after 1000 others is not judged (an
evasion the junk rule's two kinds of signs never relied on)."""

from __future__ import annotations

from .defence_helpers import send, stored

PLAIN = '<a href="https://shop.example/p">more</a>\r\n'
DECEPTIVE = '<a href="https://paypal.com.evil.example/login">paypal.com</a>\r\n'


def html_message(html: str) -> bytes:
    return (
        "From: a@sender.test\r\nTo: x@example.com\r\nSubject: links\r\n"
        f"Content-Type: text/html\r\n\r\n{html}"
    ).encode()


def test_the_links_judged_are_bounded(make_server, database_url):
    server = make_server()
    _, code, reply = send(server.port, data=html_message(DECEPTIVE + PLAIN * 1000))
    assert code == 250
    facts = stored(database_url, reply)["verdicts"]["content"]
    assert facts["deceptive_links"] == ["paypal.com -> paypal.com.evil.example"]
    _, code, reply = send(server.port, data=html_message(PLAIN * 1000 + DECEPTIVE))
    assert code == 250
    assert stored(database_url, reply)["verdicts"] is None
