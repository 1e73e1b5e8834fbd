"""Review finding: out-of-range input was a 500 instead of a client error.

A JSON body nested deeper than Python's recursion limit raised
RecursionError out of json.loads, and a page, start or limit beyond 2^63
reached PostgreSQL as an OFFSET it cannot take. Both are the client's
mistake: mail.tm's routes answer its 400 error (JSON-LD), Mailpit's its
plain-text 400 for the body; a start or limit beyond 64 bits is, as Go's
strconv.Atoi reads it in Mailpit's handler, no number: the default. The
server goes on serving.
"""

from __future__ import annotations

from .api_fixtures import make_stack, stack
from .api_helpers import account

BASE = "/mailpit/deep@example.com/api/v1"
HUGE = "99999999999999999999"  # > 2^63
DEEP = b'{"address": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"  # within the 64 KiB limit


def test_deeply_nested_json_is_a_syntax_error(stack):
    with stack.client() as client:
        _, token = account(client, "deep@example.com")
        for path, description in (
            ("/accounts", "Syntax error"),
            ("/token", 'The key "address" must be provided.'),
        ):
            answer = client.post(path, content=DEEP, headers={"Content-Type": "application/json"})
            assert answer.status_code == 400, (path, answer.status_code, answer.text)
            assert answer.json()["hydra:description"] == description
        # PATCH reads a body only once the message is found: a route that reads
        # it whatever the id is Mailpit's PUT.
        put = client.put(
            f"{BASE}/messages",
            content=DEEP,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        assert put.status_code == 400 and put.text.startswith("invalid request body")
        assert client.get("/domains").status_code == 200


def test_numbers_beyond_64_bits_are_refused(stack):
    with stack.client() as client:
        _, token = account(client, "deep@example.com")
    with stack.client(token) as client:
        for path in ("/messages", "/domains"):
            answer = client.get(path, params={"page": HUGE})
            assert answer.status_code == 400, (path, answer.status_code, answer.text)
            assert answer.json()["hydra:description"].startswith("Page should not be greater")
            # The largest page that can be asked for is an empty page.
            last = client.get(path, params={"page": str((2**63 - 1) // 30)})
            assert last.status_code == 200 and last.json()["hydra:member"] == []
        for route in ("messages", "search?query=x&"):
            for name in ("start", "limit"):
                separator = "" if route.endswith("&") else "?"
                answer = client.get(f"{BASE}/{route}{separator}{name}={HUGE}")
                assert answer.status_code == 200, (route, name, answer.text)
                assert answer.json()["start"] == 0
            edge = client.get(f"{BASE}/{route}{separator}start={2**63 - 1}")
            assert edge.status_code == 200 and edge.json()["messages"] == []
