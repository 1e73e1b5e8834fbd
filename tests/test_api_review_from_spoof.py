"""Review finding: the API showed a From address DMARC never checked.

DMARC (app/auth_dmarc.py) evaluates the address of the From field (`"support@bank.com"
<x@evil.com>` is evil.com's mail). The stored header_from keeps the display
name; the API read earlier writers' unquoted `support@bank.com <x@evil.com>`
back as address support@bank.com, so mail that passed as evil.com was shown
as bank.com's, although bank.com publishes p=reject and the same mail with a
plain `From: support@bank.com` is refused. Whatever the display name says,
every route shows the address DMARC checked.
"""

from __future__ import annotations

import smtplib

import httpx
import pytest

from .api_helpers import ApiServer, account, wait_messages
from .dnsserver import DnsServer
from .helpers import eventually, query

FROMS = [
    '"support@bank.com" <x@evil.com>',
    "x@evil.com (support@bank.com)",
    "=?utf-8?q?Bank_=3Csupport=40bank=2Ecom=3E?= <x@evil.com>",
]
ZONES = {
    ("evil.com", "TXT"): ["v=spf1 ip4:127.0.0.1 -all"],
    ("_dmarc.bank.com", "TXT"): ["v=DMARC1; p=reject"],
    ("bank.com", "TXT"): ["v=spf1 -all"],
}


def spoof(from_field: str) -> bytes:
    return f"From: {from_field}\r\nSubject: spoof\r\n\r\nx\r\n".encode()


@pytest.mark.parametrize("from_field", FROMS)
def test_shown_sender_is_the_dmarc_checked_one(make_server, database_url, tmp_path, from_field):
    dns = DnsServer(ZONES)
    api = ApiServer(database_url, str(tmp_path / "data"))
    try:
        smtp = make_server(dns_resolver=dns.address, auth_checks="enforce")
        with smtplib.SMTP("127.0.0.1", smtp.port, timeout=30) as client:
            client.ehlo("mail.evil.com")
            # Baseline: the honest spoof is refused by bank.com's p=reject.
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.sendmail("x@evil.com", ["box@example.com"], spoof("support@bank.com"))
            assert refused.value.smtp_code == 550
            client.sendmail("x@evil.com", ["box@example.com"], spoof(from_field))
        [row] = eventually(lambda: query(database_url, "SELECT dmarc, dmarc_domain FROM emails"))
        assert row["dmarc_domain"] == "evil.com"
        api.start()
        with httpx.Client(base_url=api.url, timeout=30) as client:
            base = "/mailpit/box@example.com/api/v1"
            listed = client.get(f"{base}/messages").json()["messages"][0]["From"]
            opened = client.get(f"{base}/message/latest").json()["From"]
            for shown in (listed, opened):
                assert shown["Address"] == "x@evil.com", (
                    f"DMARC {row['dmarc']} for {row['dmarc_domain']}, but the API shows {shown}"
                )
            _, token = account(client, "box@example.com")
            client.headers["Authorization"] = f"Bearer {token}"
            [message] = wait_messages(client, 1)
            assert message["from"]["address"] == "x@evil.com"
            full = client.get(f"/messages/{message['id']}").json()
            assert full["from"]["address"] == "x@evil.com"
    finally:
        if api.process is not None:
            api.kill()
        dns.stop()
