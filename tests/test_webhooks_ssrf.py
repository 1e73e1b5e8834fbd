"""Webhooks cannot be aimed inside: with WEBHOOK_ALLOW_PRIVATE=false a URL
whose host is, or resolves to, a non-global address is refused when it is
added (command line) and when it is sent to (the service), and redirects
are never followed."""

from __future__ import annotations

import asyncio

import pytest

from app import webhooks_net

from .api_helpers import mail, send
from .helpers import app_command, eventually
from .webhook_helpers import FAST, add_hook, endpoint, outbox
from .webhook_receiver import Receiver

ADDRESS = "hooked@example.com"

# Each names 127.0.0.1 (or another address inside) in a form some parser accepts.
INSIDE = [
    "http://localhost:8080/",  # a name resolving to 127.0.0.1 (and ::1)
    "http://127.0.0.1/",
    "http://127.1/",
    "http://[::1]/",  # an IPv6 literal
    "http://2130706433/",  # decimal
    "http://0x7f.1/",  # hexadecimal, short form
    "http://0x7f000001/",
    "http://0177.0.0.1/",  # octal
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped IPv6
    "http://[2002:7f00:1::]/",  # 6to4 around 127.0.0.1
    "http://0.0.0.0/",
    "http://[::]/",
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata: link-local
    "http://10.1.2.3/",
    "http://192.168.0.1/",
    "http://100.64.0.1/",  # shared address space
    "http://[fe80::1]/",
    "http://[fd00::1]/",
    "http://224.0.0.1/",  # multicast
    "http://240.0.0.1/",  # reserved
]


@pytest.mark.parametrize("url", INSIDE)
def test_inside_addresses_refused(url):
    with pytest.raises(webhooks_net.Refused, match="public addresses only"):
        asyncio.run(webhooks_net.resolve(url, allow_private=False))


def test_checked_address_is_the_one_used():
    target = asyncio.run(webhooks_net.resolve("http://localhost:8080/hook?x=1", True))
    assert "http://127.0.0.1:8080/hook?x=1" in target.urls
    assert set(target.urls) <= {"http://127.0.0.1:8080/hook?x=1", "http://[::1]:8080/hook?x=1"}
    assert target.host == "localhost"
    assert webhooks_net.host_header("http://localhost:8080/x") == "localhost:8080"
    public = asyncio.run(webhooks_net.resolve("https://93.184.215.14/a", False))
    assert public.urls == ("https://93.184.215.14:443/a",)


@pytest.mark.parametrize(
    "url", ["http://localhost:9/", "http://[::1]/", "http://2130706433/", "http://0x7f.1/"]
)
def test_add_refuses_inside_addresses(database_url, url):
    done = app_command(
        "webhooks", "add", url, DATABASE_URL=database_url, WEBHOOK_ALLOW_PRIVATE="false"
    )
    assert done.returncode == 2
    assert "127.0.0.1 (loopback)" in done.stderr or "::1 (loopback)" in done.stderr
    assert "WEBHOOK_ALLOW_PRIVATE=true" in done.stderr


def test_add_refuses_bad_urls(database_url):
    for url, why in [
        ("ftp://example.com/", "only http:// and https://"),
        ("http://user:secret@example.com/", "user name or password"),
        ("http:///nohost", "names no host"),
    ]:
        done = app_command("webhooks", "add", url, DATABASE_URL=database_url)
        assert done.returncode == 2 and why in done.stderr, done.stderr


def test_send_refuses_inside_addresses(make_server, database_url):
    """An endpoint stored while private addresses were allowed is still not
    sent to by a service that does not allow them."""
    receiver = Receiver()
    try:
        hook, receiver.secret = add_hook(database_url, f"http://localhost:{receiver.port}/hook")
        server = make_server(**{**FAST, "webhook_allow_private": "false"})
        server.wait_for_log(r"\[webhooks\] subscribed")
        send(server.port, [ADDRESS], mail(ADDRESS, "inside"))
        eventually(lambda: endpoint(database_url, hook)["failures"] >= 2)
        assert "refused: localhost resolves to" in endpoint(database_url, hook)["last_error"]
        assert receiver.received == [] and not receiver.arrived.is_set()
        assert outbox(database_url)[0]["attempts"] >= 2  # kept, retried, never sent
    finally:
        receiver.stop()


def test_redirect_not_followed(make_server, database_url):
    inside = Receiver()
    redirecting = Receiver(status=307, location=inside.url)
    try:
        hook, redirecting.secret = add_hook(database_url, redirecting.url)
        server = make_server(**FAST)
        server.wait_for_log(r"\[webhooks\] subscribed")
        send(server.port, [ADDRESS], mail(ADDRESS, "redirected"))
        eventually(lambda: len(redirecting.received) >= 2)  # retried, not followed
        row = endpoint(database_url, hook)
        assert "HTTP 307: redirects are not followed" in row["last_error"]
        assert row["delivered"] == 0
        assert inside.received == [] and not inside.arrived.is_set()
    finally:
        inside.stop()
        redirecting.stop()
