"""ARC over a big body (found by review): dkimpy verifies every ARC set (up
to 50), each hashing the whole body again; one 20 MB message with 50 sets
kept a worker busy for about 40 CPU-seconds after its 250, AUTH_TIMEOUT
notwithstanding (a thread cannot be cancelled)."""

from __future__ import annotations

import smtplib

from .dnsserver import DnsServer, dkim_key
from .helpers import eventually, query

_, PUBLIC = dkim_key()


def arc_bomb(sets: int = 50, body_mb: int = 20) -> bytes:
    headers = []
    for i in range(sets, 0, -1):
        cv = "none" if i == 1 else "pass"
        headers += [
            f"ARC-Seal: i={i}; a=rsa-sha256; cv={cv}; d=attacker.test; s=x; b=AAAA",
            f"ARC-Message-Signature: i={i}; a=rsa-sha256; c=relaxed/relaxed; d=attacker.test;"
            " s=x; h=from; bh=AAAA; b=AAAA",
            f"ARC-Authentication-Results: i={i}; attacker.test; none",
        ]
    headers += ["From: a@attacker.test", "To: box@example.com", "Subject: arc"]
    line = b"word  \t word   trailing   \r\n"
    body = line * (body_mb * 1024 * 1024 // len(line))
    return "\r\n".join(headers).encode() + b"\r\n\r\n" + body


def test_arc_chain_over_a_big_body_is_not_verified(make_server, database_url):
    """Each ARC message signature hashes the whole body again (about 0.8 s of
    CPU for 20 MB, in a thread AUTH_TIMEOUT cannot stop): the body work per
    message is bounded, and what is past it is recorded as not checked."""
    dns = DnsServer({("x._domainkey.attacker.test", "TXT"): [f"v=DKIM1; k=rsa; p={PUBLIC}"]})
    try:
        server = make_server(dns_resolver=dns.address, max_message_size=str(30 << 20))
        with smtplib.SMTP("127.0.0.1", server.port, timeout=120) as client:
            client.sendmail("a@attacker.test", ["box@example.com"], arc_bomb())
        rows = eventually(lambda: query(database_url, "SELECT auth_results FROM emails"), 60)
        assert "arc=none (not checked: 50 sets over this body)" in rows[0][0], rows[0][0]
        small = arc_bomb(sets=2, body_mb=1).replace(b"Subject: arc", b"Subject: small")
        with smtplib.SMTP("127.0.0.1", server.port, timeout=120) as client:
            client.sendmail("a@attacker.test", ["box@example.com"], small)
        checked = eventually(
            lambda: query(database_url, "SELECT auth_results FROM emails WHERE subject = 'small'")
        )[0][0]
        assert "not checked" not in checked and " arc=" in checked  # a small chain is verified
    finally:
        dns.stop()
