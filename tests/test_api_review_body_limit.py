"""Review finding: a chunked request body was not limited.

The 64 KiB limit on request bodies looked only at Content-Length, so the
same body sent with `Transfer-Encoding: chunked` (no Content-Length) was read
whole, however large. The limit now counts the bytes as they are read
(app.BodyLimit), for every route.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from .api_fixtures import make_stack, stack
from .api_helpers import account

LIMIT = 64 * 1024


def chunked(body: bytes, size: int = 4096) -> Iterator[bytes]:
    """`body` in pieces: httpx sends a generator with chunked transfer-encoding."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def padded(fields: dict[str, object], total: int) -> bytes:
    """A JSON object with `fields`, padded by an unknown key to `total` bytes."""
    body = json.dumps({**fields, "padding": ""}).encode()
    return body.replace(b'"padding": ""', b'"padding": "' + b"x" * (total - len(body)) + b'"')


def test_chunked_bodies_are_held_to_the_limit(stack):
    fields = {"address": "big@example.com", "password": "secret-pass"}
    with stack.client() as client:
        too_big = padded(fields, LIMIT + 1)
        answer = client.post("/accounts", content=chunked(too_big))
        assert answer.request.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in answer.request.headers
        assert answer.status_code == 413, answer.text
        assert answer.json()["status"] == 413
        # Declared the same body is refused too, and nothing was made.
        assert client.post("/accounts", content=too_big).status_code == 413
        assert client.post("/token", json=fields).status_code == 401

        # The same route on the same connection, a body within the limit: served.
        made = client.post("/accounts", content=chunked(padded(fields, LIMIT)))
        assert made.status_code == 201, made.text

        # Every route that reads a body: Mailpit's PUT too.
        _, token = account(client, "owner@example.com")
        put = client.put(
            "/mailpit/owner@example.com/api/v1/messages",
            content=chunked(padded({"IDs": [], "Read": True}, LIMIT * 4)),
            headers={"Authorization": f"Bearer {token}"},
        )
        assert put.status_code == 413, put.text
