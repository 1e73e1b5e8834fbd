"""SPF, DKIM, DMARC and ARC on receipt, against a local DNS server on 127.0.0.1.

Messages are signed here with keys made for the test (openssl + dkimpy);
the service resolves through DNS_RESOLVER and stores the results.
"""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest

from .dnsserver import DnsServer, dkim_key
from .helpers import eventually, free_port, query
from .test_metrics import samples

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"


KEY, PUBLIC = dkim_key()


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    server = DnsServer(
        {
            ("signed.test", "TXT"): ["v=spf1 ip4:127.0.0.1 -all"],
            ("_dmarc.signed.test", "TXT"): ["v=DMARC1; p=reject"],
            ("sel._domainkey.signed.test", "TXT"): [f"v=DKIM1; k=rsa; p={PUBLIC}"],
            ("softfail.test", "TXT"): ["v=spf1 ~all"],
            ("hardfail.test", "TXT"): ["v=spf1 ip4:192.0.2.1 -all"],
            ("_dmarc.quarantine.test", "TXT"): ["v=DMARC1; p=quarantine"],
            ("quarantine.test", "TXT"): ["v=spf1 -all"],
            ("nokey.test", "TXT"): ["v=spf1 -all"],
        }
    )
    yield server
    server.stop()


def message(sender: str, subject: str, body: str = "hello\r\n") -> bytes:
    return (
        f"From: Someone <{sender}>\r\nTo: box@example.com\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@test>\r\n\r\n{body}"
    ).encode()


def signed(raw: bytes, domain: str = "signed.test", selector: str = "sel") -> bytes:
    signature = dkim.sign(
        raw, selector.encode(), domain.encode(), KEY, include_headers=[b"from", b"to", b"subject"]
    )
    return signature + raw


def send(port: int, mail_from: str, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=15) as client:
        client.sendmail(mail_from, ["box@example.com"], raw)


def results(url: str, subject: str) -> tuple[str, str, str, str, str]:
    rows = eventually(
        lambda: query(
            url,
            "SELECT spf, dkim, dmarc, dmarc_domain, auth_results FROM emails WHERE subject = $1",
            subject,
        )
    )
    return tuple(rows[0])  # type: ignore[return-value]


# (name, MAIL FROM, message, spf, dkim, dmarc, dmarc domain: the From domain
# DMARC looked at, also when it publishes no record)
CASES = [
    (
        "dkim pass, dmarc aligned by dkim",
        "bounce@elsewhere.test",
        signed(message("a@signed.test", "dkim-pass")),
        ("none", "pass", "pass", "signed.test"),
    ),
    (
        "body altered after signing",
        "bounce@elsewhere.test",
        signed(message("a@signed.test", "dkim-altered")).replace(b"hello", b"HELLO"),
        ("none", "fail", "fail", "signed.test"),
    ),
    (
        "signing key not in DNS",
        "x@nokey.test",
        signed(message("a@nokey.test", "dkim-nokey"), domain="nokey.test"),
        ("fail", "permerror", "none", "nokey.test"),
    ),
    (
        "spf pass, dmarc aligned by spf",
        "x@signed.test",
        message("a@signed.test", "spf-pass"),
        ("pass", "none", "pass", "signed.test"),
    ),
    (
        "spf fail",
        "x@hardfail.test",
        message("a@hardfail.test", "spf-fail"),
        ("fail", "none", "none", "hardfail.test"),
    ),
    (
        "spf softfail",
        "x@softfail.test",
        message("a@softfail.test", "spf-softfail"),
        ("softfail", "none", "none", "softfail.test"),
    ),
    (
        "no spf record, no dmarc record",
        "x@unknown.test",
        message("a@unknown.test", "spf-none"),
        ("none", "none", "none", "unknown.test"),
    ),
    (
        "dmarc fail with p=reject",
        "x@hardfail.test",
        message("a@signed.test", "dmarc-reject"),
        ("fail", "none", "fail", "signed.test"),
    ),
    (
        "dmarc fail with p=quarantine",
        "x@quarantine.test",
        message("a@quarantine.test", "dmarc-quarantine"),
        ("fail", "none", "fail", "quarantine.test"),
    ),
    (
        "forged Authentication-Results claiming our authserv-id is ignored",
        "x@unknown.test",
        b"Authentication-Results: mx.test; spf=pass; dkim=pass header.d=signed.test; dmarc=pass\r\n"
        + message("a@signed.test", "forged-ar"),
        ("none", "none", "fail", "signed.test"),
    ),
]


def test_result_matrix_recorded(make_server, database_url, dns):
    server = make_server(auth_checks="record", dns_resolver=dns.address)
    for _, mail_from, raw, _ in CASES:
        send(server.port, mail_from, raw)
    failures = []
    for name, _, raw, expected in CASES:
        subject = raw.split(b"Subject: ")[1].split(b"\r\n")[0].decode()
        spf, dkim_result, dmarc, domain, header = results(database_url, subject)
        print(f"{name:70} spf={spf} dkim={dkim_result} dmarc={dmarc} domain={domain}")
        if (spf, dkim_result, dmarc, domain) != expected:
            failures.append(f"{name}: got {(spf, dkim_result, dmarc, domain)}, want {expected}")
        assert header.startswith("Authentication-Results: mx.test;"), header
    assert not failures, "\n".join(failures)
    # The stored raw is the message as received, after our one Received line.
    raw = query(
        database_url,
        "SELECT raw FROM raw_messages r JOIN emails e ON e.raw_id = r.id "
        "WHERE e.subject = 'forged-ar'",
    )[0][0]
    assert raw.split(b"\r\n", 1)[1] == CASES[-1][2]


def arc_sealed(raw: bytes) -> bytes:
    """`raw` as a forwarder that checked it and sealed an ARC set (i=1) would pass it on."""
    checked = b"Authentication-Results: relay.signed.test; spf=pass smtp.mailfrom=signed.test\r\n"
    seal = dkim.arc_sign(checked + raw, b"sel", b"signed.test", KEY, b"relay.signed.test")
    return b"".join(seal) + checked + raw


def test_arc_chain_validated(make_server, database_url, dns):
    server = make_server(auth_checks="record", dns_resolver=dns.address)
    sealed = arc_sealed(message("a@signed.test", "arc-sealed"))
    send(server.port, "x@elsewhere.test", sealed)
    send(
        server.port,
        "x@elsewhere.test",
        sealed.replace(b"hello", b"HELLO").replace(b"arc-sealed", b"arc-broken"),
    )
    assert " arc=pass" in results(database_url, "arc-sealed")[4]
    assert " arc=fail" in results(database_url, "arc-broken")[4]


def test_enforce_refuses_only_dmarc_reject(make_server, database_url, dns):
    metrics_port = free_port()
    server = make_server(
        auth_checks="enforce", dns_resolver=dns.address, metrics_port=str(metrics_port)
    )
    rejected = message("a@signed.test", "enforce-reject")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(server.port, "x@hardfail.test", rejected)
    assert refused.value.smtp_code == 550
    assert refused.value.smtp_error.startswith(b"5.7.1 Rejected by the DMARC policy of signed.test")
    send(server.port, "x@quarantine.test", message("a@quarantine.test", "enforce-quarantine"))
    send(server.port, "bounce@elsewhere.test", signed(message("a@signed.test", "enforce-pass")))
    assert results(database_url, "enforce-quarantine")[2] == "fail"  # recorded, delivered
    assert results(database_url, "enforce-pass")[2] == "pass"
    # Counted once, under one label whatever the domain.
    refused = {
        k: v for k, v in samples(metrics_port).items() if k.startswith("tempmail_refused_total")
    }
    assert refused == {"tempmail_refused_total{reason=550 dmarc reject}": 1}
    assert (
        query(database_url, "SELECT count(*) FROM emails WHERE subject = 'enforce-reject'")[0][0]
        == 0
    )


@pytest.mark.parametrize("ack_mode", ["instant", "durable"])
def test_dns_down_records_temperror_within_the_bound(make_server, database_url, ack_mode):
    dead = DnsServer({})
    dead.zone.silent = True  # queries go unanswered: every lookup times out
    try:
        server = make_server(
            auth_checks="record", dns_resolver=dead.address, auth_timeout="1", ack_mode=ack_mode
        )
        began = time.monotonic()
        send(server.port, "x@signed.test", signed(message("a@signed.test", f"dns-down-{ack_mode}")))
        spf, dkim_result, dmarc, _, _ = results(database_url, f"dns-down-{ack_mode}")
        took = time.monotonic() - began
    finally:
        dead.stop()
    # Stored at all while DNS never answers: the checks are bounded (AUTH_TIMEOUT).
    assert (spf, dkim_result, dmarc) == ("temperror", "temperror", "temperror")
    print(f"DNS down, {ack_mode}: stored with temperror {took:.2f}s after sending")


def test_corpus_signed_messages_all_stored_with_results(make_server, database_url, dns):
    """Real mail, some DKIM-signed by keys long gone: no crash, every result recorded."""
    files = sorted(
        p
        for p in CORPUS.rglob("*")
        if p.is_file() and p.suffix != ".md" and p.name != ".gitattributes"
    )
    chosen = [p for p in files if b"dkim-signature" in p.read_bytes()[:20000].lower()][:150]
    assert len(chosen) >= 20, "the corpus has signed messages"
    server = make_server(auth_checks="record", dns_resolver=dns.address)
    for start in range(0, len(chosen), 50):  # under MAX_MESSAGES_PER_CONNECTION
        with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
            for path in chosen[start : start + 50]:
                raw = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                client.sendmail("x@corpus.test", ["box@example.com"], raw)
    eventually(
        lambda: query(database_url, "SELECT count(*) FROM emails")[0][0] == len(chosen), timeout=60
    )
    rows = query(database_url, "SELECT dkim, count(*) FROM emails GROUP BY 1")
    counts = {r[0]: r[1] for r in rows}
    print("corpus DKIM results:", counts)
    assert None not in counts, "every message has a recorded result"
    assert set(counts) <= {"pass", "fail", "permerror", "temperror", "none", "neutral", "policy"}
    assert counts.get("permerror", 0) > 0  # signed by keys that no longer exist (NXDOMAIN)
    assert "checks of" not in server.log, "no check failed or hit its bound"


def test_large_signed_message_verified_off_the_loop(make_server, database_url, dns):
    """Over 256 KiB the hashing runs in a thread; the result is the same."""
    server = make_server(auth_checks="record", dns_resolver=dns.address)
    body = "".join(f"line {n} of a long signed message\r\n" for n in range(60_000))
    send(server.port, "x@signed.test", signed(message("a@signed.test", "big-signed", body)))
    assert results(database_url, "big-signed")[:3] == ("pass", "pass", "pass")


def test_dkim_signatures_per_message_are_bounded(make_server, database_url, dns):
    """2,000 signatures used to send 2,003 DNS queries to domains the sender
    chose; now at most 5 are verified and the rest recorded as not checked."""
    server = make_server(auth_checks="record", dns_resolver=dns.address)
    fake = b"".join(
        b"DKIM-Signature: v=1; a=rsa-sha256; d=spam%d.example; s=s%d; h=from; "
        b"bh=AAAA; b=BBBB\r\n" % (n, n)
        for n in range(2000)
    )
    before = len(dns.zone.queries)
    send(server.port, "x@elsewhere.test", fake + message("a@signed.test", "many-signatures"))
    _, dkim_result, _, _, header = results(database_url, "many-signatures")
    key_queries = [q for q in dns.zone.queries[before:] if "._domainkey." in q]
    print(f"2000 signatures: {len(key_queries)} key lookups, dkim={dkim_result}")
    assert len(key_queries) <= 5, key_queries
    assert 'dkim=policy reason="1995 more signatures not checked"' in header, header


def test_resolver_address_forms():
    from app.resolver import parse_address

    assert parse_address("") is None
    assert parse_address("127.0.0.1") == ("127.0.0.1", 53)
    assert parse_address("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_address("[::1]:5353") == ("::1", 5353)
    assert parse_address("::1") == ("::1", 53)


def test_openssl_rsa_verification_agrees_with_dkimpy():
    """auth_dkim.rsa_verify replaces dkimpy's pure-Python RSA: same verdicts."""
    import hashlib
    import random

    from dkim import crypto

    from app import auth_dkim

    assert dkim.RSASSA_PKCS1_v1_5_verify is auth_dkim.rsa_verify  # installed where dkimpy looks
    private = crypto.parse_pem_private_key(KEY)
    public = {"modulus": private["modulus"], "publicExponent": private["publicExponent"]}
    rng = random.Random(3)
    for n in range(20):
        digest = hashlib.sha256(b"message %d" % n)
        signature = crypto.RSASSA_PKCS1_v1_5_sign(digest, private)
        forged = bytearray(signature)
        forged[rng.randrange(len(forged))] ^= 1 << rng.randrange(8)
        other = hashlib.sha256(b"another message")
        for args in ((digest, signature), (digest, bytes(forged)), (other, signature)):
            assert auth_dkim.rsa_verify(*args, public) == auth_dkim._dkimpy_verify(*args, public)
        assert auth_dkim.rsa_verify(digest, signature, public)


def test_our_parse_is_the_one_dkimpy_would_make():
    """auth_dkim.dkim_parts spares dkimpy a second parse of the whole message: where
    it answers, its headers and body are dkimpy's own, on every corpus message."""
    from app.auth_dkim import dkim_parts

    from .helpers import corpus_files

    answered = 0
    for path in corpus_files():
        raw = path.read_bytes()
        for message in (raw, raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")):
            parts = dkim_parts(message)
            if parts is None:
                continue
            answered += 1
            assert parts == tuple(dkim.rfc822_parse(message)), path
    assert dkim_parts(b"Subject: a\nX: b\r\n\r\nbody\r\n") is None  # a bare LF
    assert dkim_parts(b" folded first\r\n\r\nbody") is None  # dkimpy would fail too
    assert answered > 1300
    print(f"dkim_parts answered for {answered} corpus spellings")
