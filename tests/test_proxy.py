"""PROXY protocol v1 and v2: the client address behind a load balancer."""

from __future__ import annotations

import ipaddress
import re
import struct

from .helpers import eventually, query
from .raw import Raw

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v1(source: str, port: int = 40000) -> bytes:
    return f"PROXY TCP4 {source} 192.0.2.25 {port} 25\r\n".encode()


def proxy_v2(source: str, port: int = 40000) -> bytes:
    addresses = ipaddress.IPv4Address(source).packed + ipaddress.IPv4Address("192.0.2.25").packed
    body = addresses + struct.pack("!HH", port, 25)
    # version 2, command PROXY; family INET, protocol STREAM; length
    return V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def send_through(server_port: int, header: bytes, rcpt: bytes) -> bytes:
    with Raw(server_port) as conn:
        conn.send(header)
        assert conn.reply().startswith(b"220")
        assert conn.cmd(b"EHLO balancer.test").startswith(b"250")
        assert conn.cmd(b"MAIL FROM:<s@sender.test>").startswith(b"250")
        assert conn.cmd(b"RCPT TO:<" + rcpt + b">").startswith(b"250")
        assert conn.cmd(b"DATA").startswith(b"354")
        conn.send(b"Subject: proxied\r\n\r\nx\r\n.\r\n")
        return conn.reply()


def test_v1_and_v2_headers_give_the_client_address(make_server, database_url):
    server = make_server(proxy_protocol="on")
    assert send_through(server.port, proxy_v1("203.0.113.7"), b"v1@example.com").startswith(b"250")
    assert send_through(server.port, proxy_v2("198.51.100.9"), b"v2@example.com").startswith(b"250")
    rows = eventually(
        lambda: (
            (
                r := query(
                    database_url,
                    "SELECT mailbox_owner, host(remote_ip), "
                    "r.raw FROM emails JOIN raw_messages r ON r.id = raw_id "
                    "ORDER BY 1",
                )
            )
            and len(r) == 2
            and r
        )
    )
    assert [(r[0], r[1]) for r in rows] == [
        ("v1@example.com", "203.0.113.7"),
        ("v2@example.com", "198.51.100.9"),
    ]
    assert b"([203.0.113.7])" in rows[0][2].split(b"\r\n")[0]  # the Received line too


def test_without_header_the_connection_is_refused(make_server):
    server = make_server(proxy_protocol="on")
    with Raw(server.port, timeout=15) as conn:
        conn.send(b"EHLO no-proxy.test\r\n")
        assert conn.closed()


def test_per_address_limit_uses_the_header_address(make_server):
    server = make_server(proxy_protocol="on", max_connections_per_ip="1")
    first = Raw(server.port)
    first.send(proxy_v1("203.0.113.7"))
    assert first.reply().startswith(b"220")
    with Raw(server.port) as other:  # another client through the same balancer
        other.send(proxy_v2("203.0.113.8"))
        assert other.reply().startswith(b"220")
    with Raw(server.port) as same:
        same.send(proxy_v1("203.0.113.7", 40001))
        assert same.reply() == (
            b"421 4.7.0 Too many connections from your address, try again later\r\n"
        )
        assert same.closed()
    first.close()
    server.wait_for_log(re.escape("refused 203.0.113.7"))


def test_proxy_header_from_an_untrusted_peer_is_not_believed(make_server, database_url):
    """A PROXY header is believed only from PROXY_TRUSTED peers: a stranger
    claiming 209.85.220.41 would otherwise forge our SPF (and DMARC) pass."""
    server = make_server(proxy_protocol="on", proxy_trusted="192.0.2.0/24")
    with Raw(server.port, timeout=15) as conn:
        conn.send(proxy_v1("209.85.220.41"))
        assert conn.closed()
    server.wait_for_log(re.escape("refused 127.0.0.1: untrusted PROXY peer"))
    # The default trusts the loopback balancer, as the other tests here show.
    trusting = make_server(proxy_protocol="on")
    assert send_through(trusting.port, proxy_v1("203.0.113.9"), b"ok@example.com").startswith(
        b"250"
    )
    assert (
        query(database_url, "SELECT count(*) FROM emails WHERE host(remote_ip) = '209.85.220.41'")[
            0
        ][0]
        == 0
    )
