"""Review: a NUL or a lone surrogate (JSON "\\u0000", "\\ud800") in a
client's input reaches PostgreSQL or argon2 unchecked: 500s (or a dropped
connection) instead of 400/401. Claims broken: "out-of-range inputs get
400/422, never 500"; mail.tm/Mailpit/Mercure answer errors as errors.
"""

from __future__ import annotations

import json

import httpx

from .api_fixtures import make_stack, stack  # noqa: F401
from .api_helpers import HUB, account

ADDR = "probe@example.com"
OPEN = "/mailpit/open@example.com/api/v1"
JSON = {"content-type": "application/json"}


def status(stack, method: str, path: str, **kw) -> object:  # noqa: F811
    try:
        with stack.client() as client:
            return client.request(method, path, **kw).status_code
    except httpx.HTTPError as error:  # the server dropped the connection
        return repr(error)


def test_nul_and_surrogates_are_client_errors(stack):  # noqa: F811
    with stack.client() as client:
        account(client, ADDR, "secret-pass")
    probes = {
        "POST /token NUL address": (
            "POST", "/token",
            {"content": json.dumps({"address": "a\u0000@example.com", "password": "secret-pass"}),
             "headers": JSON}),
        "POST /token surrogate address": (
            "POST", "/token",
            {"content": json.dumps({"address": "\ud800@example.com", "password": "secret-pass"}),
             "headers": JSON}),
        "POST /token surrogate password": (
            "POST", "/token",
            {"content": json.dumps({"address": ADDR, "password": "\ud800secret"}),
             "headers": JSON}),
        "POST /accounts surrogate password": (
            "POST", "/accounts",
            {"content": json.dumps({"address": "new@example.com", "password": "\ud800secretx"}),
             "headers": JSON}),
        "Mailpit basic auth NUL user": (
            "GET", f"/mailpit/{ADDR}/api/v1/messages", {"auth": ("a\x00@example.com", "x")}),
        "Mailpit search NUL": ("GET", f"{OPEN}/search", {"params": {"query": "a\x00b"}}),
        "Mercure topic NUL": ("GET", HUB, {"params": {"topic": "/addresses/a\x00b@example.com"}}),
    }  # fmt: skip
    got = {name: status(stack, method, path, **kw) for name, (method, path, kw) in probes.items()}
    bad = {name: s for name, s in got.items() if not (isinstance(s, int) and 400 <= s < 500)}
    assert not bad, json.dumps(bad)
