"""Review of issue 23: a rule's client network matches an IPv4 client that
arrives as an IPv4-mapped IPv6 address, as a balancer on a dual-stack
listener names it (HAProxy `bind :::25 v4v6`: `PROXY TCP6 ::ffff:a.b.c.d`),
and as the DNSBL, the rate limits and the connection limits already read
it. Before the fix an IPv4 `--client` rule (a reject, or the `accept` of a
monitor) never matched such a client."""

from __future__ import annotations

from .helpers import app_command, eventually
from .raw import Raw


def mail_reply(port: int) -> bytes:
    with Raw(port) as conn:
        conn.send(b"PROXY TCP6 ::ffff:192.0.2.7 2001:db8::25 40000 25\r\n")
        assert conn.reply().startswith(b"220 ")
        assert conn.cmd(b"EHLO client.test").startswith(b"250")
        return conn.cmd(b"MAIL FROM:<a@sender.test>")


def test_an_ipv4_rule_matches_an_ipv4_mapped_client(make_server, database_url):
    server = make_server(proxy_protocol="on")
    done = app_command(
        "rules", "add", "--action", "reject", "--client", "192.0.2.0/24",
        "--reply", "550 5.7.1 Not from here", DATABASE_URL=database_url,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # Once the NOTIFY has reloaded the rules.
    eventually(lambda: mail_reply(server.port) == b"550 5.7.1 Not from here\r\n")
