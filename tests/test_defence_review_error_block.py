"""Review of issue 23: the error block (RATE_ERRORS_PER_IP, then 421 for
RATE_BLOCK_SECONDS) holds where the client is not simply the TCP peer.

- Behind a load balancer (PROXY protocol) the blocked client's next
  connection is refused at the greeting: before the fix the check ran
  before the PROXY header was read, on the balancer's address, so a
  blocked client was greeted 220 again.
- An IPv6 client is its /64, as for the connection limits: before the fix
  the block was keyed by the full address, and the next address of the
  same /64 (2^64 of them) was greeted 220.
Both through the real server, clients' addresses given by PROXY v1 headers."""

from __future__ import annotations

from .raw import Raw

BLOCKED = b"421 4.7.0 Too many errors from your address, try again later\r\n"
SETTINGS = {
    "proxy_protocol": "on",
    "rate_limits": "enforce",
    "rate_errors_per_ip": "3/minute",
    "rate_block_seconds": "600",
}


def header(source: str) -> bytes:
    family = "TCP6" if ":" in source else "TCP4"
    destination = "2001:db8::25" if ":" in source else "192.0.2.25"
    return f"PROXY {family} {source} {destination} 40000 25\r\n".encode()


def make_errors(port: int, source: str) -> bytes:
    """Unknown recipients from `source` until the server closes; the last reply."""
    with Raw(port) as conn:
        conn.send(header(source))
        assert conn.reply().startswith(b"220 ")
        assert conn.cmd(b"EHLO prober.test").startswith(b"250")
        assert conn.cmd(b"MAIL FROM:<a@sender.test>").startswith(b"250")
        for n in range(10):
            reply = conn.cmd(b"RCPT TO:<u%d@not-ours.test>" % n)
            if not reply.startswith(b"550"):
                return reply
        return b"never blocked"


def greeting(port: int, source: str) -> bytes:
    with Raw(port) as conn:
        conn.send(header(source))
        return conn.reply()


def test_a_blocked_client_behind_a_proxy_is_refused_at_connect(make_server):
    server = make_server(**SETTINGS)
    assert make_errors(server.port, "203.0.113.5") == BLOCKED
    assert greeting(server.port, "203.0.113.5") == BLOCKED
    assert greeting(server.port, "203.0.113.6").startswith(b"220 ")
    server.wait_for_log(r"refused 203\.0\.113\.5: blocked for errors")


def test_an_ipv6_client_is_blocked_with_its_slash_64(make_server):
    server = make_server(**SETTINGS)
    assert make_errors(server.port, "2001:db8:1:2::1") == BLOCKED
    assert greeting(server.port, "2001:db8:1:2::bad:2") == BLOCKED
    assert greeting(server.port, "2001:db8:1:3::1").startswith(b"220 ")
