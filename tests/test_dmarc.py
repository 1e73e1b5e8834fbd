"""DMARC in enforce mode with real-looking names, on a local DNS server.

`.test` names prove nothing about alignment: the public suffix list does not
know `.test`, so every `*.test` domain shares the organizational domain
`test`. These cases use names under `.com` and `.co.uk` that the list knows,
hyphenated and IDN domains (authheaders cut `bank-of-trust.com` to `bank`
and `xn--bcher-kva.com` to `xn`, and let a spoofed From through), and the
policy choices of RFC 7489: relaxed and strict alignment, the organizational
domain's record, `sp`, `p=none`, SPF alignment, no record, `pct`, and a
record with a bad tag value (the tag's default is used, the policy stands).
"""

from __future__ import annotations

import re
import smtplib
from collections.abc import Iterator

import dkim
import pytest

from .dnsserver import DnsServer, dkim_key
from .helpers import eventually, query

KEY, PUBLIC = dkim_key()
DKIM_KEY = [f"v=DKIM1; k=rsa; p={PUBLIC}"]

ZONE = {
    ("_dmarc.bank-of-trust.com", "TXT"): ["v=DMARC1; p=reject"],
    ("bank-of-trust.com", "TXT"): ["v=spf1 ip4:192.0.2.1 -all"],
    ("_dmarc.xn--bcher-kva.com", "TXT"): ["v=DMARC1; p=reject"],
    ("_dmarc.relaxed-shop.com", "TXT"): ["v=DMARC1; p=reject"],
    ("sel._domainkey.relaxed-shop.com", "TXT"): DKIM_KEY,
    ("_dmarc.strict-shop.com", "TXT"): ["v=DMARC1; p=reject; adkim=s"],
    ("sel._domainkey.strict-shop.com", "TXT"): DKIM_KEY,
    ("_dmarc.org-policy.co.uk", "TXT"): ["v=DMARC1; p=reject"],
    ("_dmarc.lenient-parent.com", "TXT"): ["v=DMARC1; p=reject; sp=none"],
    ("_dmarc.own-record.com", "TXT"): ["v=DMARC1; p=reject; sp=none"],
    ("_dmarc.monitor-only.com", "TXT"): ["v=DMARC1; p=none"],
    ("_dmarc.spf-aligned.com", "TXT"): ["v=DMARC1; p=reject"],
    ("spf-aligned.com", "TXT"): ["v=spf1 ip4:127.0.0.1 -all"],
    ("_dmarc.ramp-up.com", "TXT"): ["v=DMARC1; p=reject; pct=0"],
    ("_dmarc.typo-in-tag.com", "TXT"): ["v=DMARC1; p=reject; adkim=x; pct=all"],
}


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    server = DnsServer(ZONE)
    yield server
    server.stop()


def message(header_from: str, subject: str) -> bytes:
    return (
        f"From: Someone <{header_from}>\r\nTo: box@example.com\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@dmarc.test>\r\n\r\nhello\r\n"
    ).encode()


def signed(raw: bytes, domain: str) -> bytes:
    signature = dkim.sign(
        raw, b"sel", domain.encode(), KEY, include_headers=[b"from", b"to", b"subject"]
    )
    return signature + raw


# (case, MAIL FROM, message, expected reply code, dmarc result, DMARC domain)
CASES = [
    (
        "hyphenated domain spoofed: p=reject applies",
        "x@attacker-mail.net",
        message("ceo@bank-of-trust.com", "hyphen"),
        550,
        None,
        None,
    ),
    (
        "IDN domain spoofed: p=reject applies",
        "x@attacker-mail.net",
        "From: A <a@bücher.com>\r\nSubject: idn\r\nMessage-ID: <idn@x>\r\n\r\nhi\r\n".encode(),
        550,
        None,
        None,
    ),
    (
        "relaxed alignment: DKIM d= the parent of the From domain passes",
        "x@attacker-mail.net",
        signed(message("news@mail.relaxed-shop.com", "relaxed"), "relaxed-shop.com"),
        250,
        "pass",
        "mail.relaxed-shop.com",
    ),
    (
        "strict alignment: the same signature fails",
        "x@attacker-mail.net",
        signed(message("news@mail.strict-shop.com", "strict"), "strict-shop.com"),
        550,
        None,
        None,
    ),
    (
        "organizational domain's record found under co.uk",
        "x@attacker-mail.net",
        message("a@deep.sub.org-policy.co.uk", "orgdomain"),
        550,
        None,
        None,
    ),
    (
        "sp=none under p=reject: a subdomain is not rejected",
        "x@attacker-mail.net",
        message("a@sub.lenient-parent.com", "subdomain-sp"),
        250,
        "fail",
        "sub.lenient-parent.com",
    ),
    (
        "sp applies to subdomains only: the domain's own p=reject does",
        "x@attacker-mail.net",
        message("a@own-record.com", "own-record"),
        550,
        None,
        None,
    ),
    (
        "p=none: recorded, delivered",
        "x@attacker-mail.net",
        message("a@monitor-only.com", "p-none"),
        250,
        "fail",
        "monitor-only.com",
    ),
    (
        "SPF pass aligned with the From domain",
        "bounce@spf-aligned.com",
        message("a@spf-aligned.com", "spf-aligned"),
        250,
        "pass",
        "spf-aligned.com",
    ),
    (
        "no DMARC record",
        "x@attacker-mail.net",
        message("a@no-record-here.com", "no-record"),
        250,
        "none",
        "no-record-here.com",
    ),
    (
        "pct=0: outside the sample, quarantine is applied (delivered)",
        "x@attacker-mail.net",
        message("a@ramp-up.com", "pct-zero"),
        250,
        "fail",
        "ramp-up.com",
    ),
    (
        "bad adkim and pct values: defaults used (RFC 7489 6.3), p=reject still applies",
        "x@attacker-mail.net",
        message("ceo@typo-in-tag.com", "typo"),
        550,
        None,
        None,
    ),
]


def send(port: int, mail_from: str, raw: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("sender.example")
        client.mail(mail_from, ["SMTPUTF8"])
        assert client.rcpt("box@example.com")[0] == 250
        try:
            return client.data(raw)
        except smtplib.SMTPDataError as error:
            return error.smtp_code, error.smtp_error


def test_enforce_matrix(make_server, database_url, dns):
    server = make_server(auth_checks="enforce", dns_resolver=dns.address)
    wrong = []
    for case, mail_from, raw, code, result, domain in CASES:
        got_code, reply = send(server.port, mail_from, raw)
        if got_code != code:
            wrong.append(f"{case}: reply {got_code} {reply!r}, want {code}")
            continue
        if code == 550:
            if not reply.startswith(b"5.7.1 Rejected by the DMARC policy of "):
                wrong.append(f"{case}: reply {reply!r}")
            continue
        subject = raw.split(b"Subject: ")[1].split(b"\r\n")[0].decode()
        row = eventually(
            lambda subject=subject: query(
                database_url,
                "SELECT dmarc, dmarc_domain, auth_results FROM emails WHERE subject = $1",
                subject,
            )
        )[0]
        if (row["dmarc"], row["dmarc_domain"]) != (result, domain):
            wrong.append(f"{case}: got {row['dmarc']} {row['dmarc_domain']}")
    assert not wrong, "\n".join(wrong)
    pct = query(database_url, "SELECT auth_results FROM emails WHERE subject = 'pct-zero'")[0][0]
    assert "policy.dmarc=quarantine" in pct and "p=reject pct=0" in pct, pct
    server.wait_for_log(re.escape("refused 127.0.0.1: 550 dmarc reject (bank-of-trust.com)"))
    server.wait_for_log(re.escape("550 dmarc reject (xn--bcher-kva.com)"))


def test_record_mode_stores_the_spoof_with_its_verdict(make_server, database_url, dns):
    server = make_server(dns_resolver=dns.address)  # AUTH_CHECKS=record, the default
    assert (
        send(server.port, "x@attacker-mail.net", message("ceo@bank-of-trust.com", "kept"))[0] == 250
    )
    row = eventually(lambda: query(database_url, "SELECT dmarc, dmarc_domain FROM emails"))[0]
    assert (row["dmarc"], row["dmarc_domain"]) == ("fail", "bank-of-trust.com")
