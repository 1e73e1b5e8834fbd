"""Review finding (issue 21 item 8): the API's rate limit was bypassed from loopback.

uvicorn believes X-Forwarded-For and X-Forwarded-Proto from 127.0.0.1 unless
told otherwise, so a client on the API's host (or behind a proxy that passes
the header on) rotated the header and got 30 answers out of 30 where 8 was
the limit, and chose the scheme of the URLs written into its answers. Now
forwarded headers are believed only from API_TRUSTED_PROXIES (empty by
default: from nobody).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .api_fixtures import Stack, make_stack
from .api_helpers import mail, next_event, nginx_serving, open_stream, send, sse_events
from .helpers import ROOT, eventually, free_port, query

ADDRESS = "reader@example.com"


def client_from(stack: Stack, local: str) -> httpx.Client:
    """A client whose connections come from `local` (a fresh rate-limit bucket)."""
    transport = httpx.HTTPTransport(local_address=local)
    return httpx.Client(base_url=stack.api.url, transport=transport, timeout=30)


def rotating(client: httpx.Client, count: int) -> list[int]:
    """Statuses of `count` requests, each naming another client in X-Forwarded-For."""
    return [
        client.get("/domains", headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code
        for n in range(1, count + 1)
    ]


def reader_token(stack: Stack, locals_: tuple[str, str], forwarded: tuple[str, str]) -> str:
    """An account for ADDRESS with one message; its token. Two requests, each
    from its own address (and X-Forwarded-For), so no bucket runs dry."""
    body = {"address": ADDRESS, "password": "reader-pass"}
    tokens = []
    for local, path, forwarded_for in zip(locals_, ("/accounts", "/token"), forwarded, strict=True):
        with client_from(stack, local) as client:
            answer = client.post(path, json=body, headers={"X-Forwarded-For": forwarded_for})
            assert answer.status_code in (200, 201), answer.text
            tokens.append(answer.json().get("token"))
    send(stack.smtp.port, [ADDRESS], mail(ADDRESS))
    eventually(lambda: query(stack.database_url, "SELECT 1 FROM emails"))
    return str(tokens[-1])


def messages(stack: Stack, token: str, local: str, forwarded_for: str) -> httpx.Response:
    headers = {
        "Authorization": f"Bearer {token}",
        "X-Forwarded-For": forwarded_for,
        "X-Forwarded-Proto": "https",
        "Accept": "application/ld+json",
    }
    with client_from(stack, local) as client:
        return client.get("/messages", headers=headers)


def test_rotating_forwarded_for_from_loopback_is_rate_limited(make_stack):
    stack = make_stack(api_rate_limit="0.1")  # a burst of 1, then one every 10 s
    with client_from(stack, "127.0.0.1") as client:
        answered = rotating(client, 5)
    # The readiness probe (from 127.0.0.1 too) may have taken the one token.
    assert answered.count(200) <= 1 and answered[1:] == [429] * 4, answered


def test_forwarded_proto_from_loopback_is_not_believed_by_default(make_stack):
    stack = make_stack()
    token = reader_token(stack, ("127.0.0.1", "127.0.0.1"), ("203.0.113.7", "203.0.113.8"))
    listed = messages(stack, token, "127.0.0.1", "203.0.113.9")
    assert listed.status_code == 200, listed.text
    url = listed.json()["hydra:member"][0]["downloadUrl"]
    assert url.startswith(f"http://127.0.0.1:{stack.api.port}/messages/"), url


def test_a_trusted_proxy_is_believed(make_stack):
    """A proxy on 127.0.0.2 (a network, to show the CIDR form): its clients are
    counted one by one, its scheme is the URLs'; nobody else is believed."""
    stack = make_stack(api_rate_limit="0.1", api_trusted_proxies="127.0.0.2/31, ::1")
    with client_from(stack, "127.0.0.2") as proxy:
        assert rotating(proxy, 5) == [200] * 5  # five clients behind the proxy, one each
        again = proxy.get("/domains", headers={"X-Forwarded-For": "203.0.113.1"})
        assert again.status_code == 429  # the same client again, within its 10 s
    with client_from(stack, "127.0.0.4") as other:  # not a trusted proxy: its header is ignored
        assert rotating(other, 3) == [200, 429, 429]
    token = reader_token(stack, ("127.0.0.2", "127.0.0.2"), ("198.51.100.1", "198.51.100.2"))
    listed = messages(stack, token, "127.0.0.3", "198.51.100.3")
    assert listed.status_code == 200, listed.text
    url = listed.json()["hydra:member"][0]["downloadUrl"]
    assert url.startswith(f"https://127.0.0.1:{stack.api.port}/messages/"), url
    untrusted = messages(stack, token, "127.0.0.5", "198.51.100.4")
    assert untrusted.status_code == 200, untrusted.text
    assert untrusted.json()["hydra:member"][0]["downloadUrl"].startswith("http://")


def readme_nginx_server() -> str:
    """The `server { ... }` block of the README's reverse-proxy example."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("    server {")
    end = lines.index("    }", start)
    return "\n".join(line.removeprefix("    ") for line in lines[start : end + 1])


@contextlib.contextmanager
def nginx_in_front(api_port: int, directory: Path) -> Iterator[int]:
    """nginx running the README's example (plain HTTP on a free port instead
    of 443 with TLS) in front of the API on `api_port`; yields its port."""
    port = free_port()
    server = (
        readme_nginx_server()
        .replace("listen 443 ssl;", f"listen 127.0.0.1:{port};")
        .replace("127.0.0.1:8025", f"127.0.0.1:{api_port}")
    )
    with nginx_serving(server, port, directory):
        yield port


@pytest.mark.skipif(not shutil.which("nginx"), reason="nginx not installed")
def test_the_readmes_nginx_example(make_stack, tmp_path):
    """The example as written: each client counted by its own address (a
    header it sends is overwritten, not believed), the Host it asked for in
    its URLs, and the event stream delivered as it happens."""
    stack = make_stack(api_rate_limit="0.1", api_trusted_proxies="127.0.0.1")
    with nginx_in_front(stack.api.port, tmp_path) as port:
        url = f"http://127.0.0.1:{port}"
        for local in ("127.0.0.2", "127.0.0.3"):
            transport = httpx.HTTPTransport(local_address=local)
            with httpx.Client(base_url=url, transport=transport, timeout=30) as client:
                assert rotating(client, 3) == [200, 429, 429], local
        token = reader_token(stack, ("127.0.0.4", "127.0.0.5"), ("", ""))
        headers = {"Authorization": f"Bearer {token}", "Host": "mail.example.com"}
        transport = httpx.HTTPTransport(local_address="127.0.0.6")
        with httpx.Client(base_url=url, transport=transport, timeout=30) as client:
            listed = client.get("/messages", headers=headers)
            assert listed.status_code == 200, listed.text
            download = listed.json()["hydra:member"][0]["downloadUrl"]
            assert download.startswith("http://mail.example.com/messages/"), download
        transport = httpx.HTTPTransport(local_address="127.0.0.7")
        with httpx.Client(base_url=url, transport=transport, timeout=60) as client:
            with open_stream(client, "/addresses/live@example.com") as response:
                assert response.status_code == 200
                events = sse_events(response)
                send(stack.smtp.port, ["live@example.com"], mail("live@example.com", "pushed"))
                assert next_event(events)["data"]["subject"] == "pushed"
