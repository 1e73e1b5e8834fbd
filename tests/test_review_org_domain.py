"""Review: org_domain() uses publicsuffix2's get_public_suffix, which for a
TLD missing from authheaders' bundled list returns the TLD itself ("test",
"zzzz") instead of applying the PSL default rule "*" (organizational domain
= one label below the TLD). Then every domain under that TLD shares one
"organizational domain": relaxed DMARC alignment accepts SPF/DKIM of any
other domain there (SPF pass for evil.zzzz aligns with From bank.zzzz), and
policy discovery for a.bank.zzzz asks _dmarc.zzzz, never _dmarc.bank.zzzz.
Affects TLDs delegated after the bundled list (and .test/.internal-style
names an operator may use).
"""

from __future__ import annotations

import asyncio

from app.auth import Authenticator
from app.auth_dmarc import org_domain
from app.model import Envelope
from app.resolver import Resolver

from .dnsserver import DnsServer


def test_unknown_tld_org_domain_is_one_label_below_it():
    assert org_domain("a.bank.zzzz") == "bank.zzzz"


def test_spf_of_another_domain_under_the_same_tld_does_not_align():
    dns = DnsServer(
        {
            ("evil.zzzz", "TXT"): ["v=spf1 ip4:127.0.0.1 -all"],
            ("_dmarc.bank.zzzz", "TXT"): ["v=DMARC1; p=reject"],
        }
    )
    try:

        async def check():
            auth = Authenticator(Resolver(dns.address), "mx.test", 3)
            raw = b"From: support@bank.zzzz\r\nSubject: s\r\n\r\nx\r\n"
            envelope = Envelope.new(
                "x@evil.zzzz", ("b@example.com",), raw, "127.0.0.1", "h.evil.zzzz"
            )
            return await auth.check(envelope)

        result = asyncio.run(check())
        assert (result.dmarc, result.dmarc_policy) == ("fail", "reject"), result
    finally:
        dns.stop()
