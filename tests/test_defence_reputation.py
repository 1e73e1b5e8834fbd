"""IP reputation at connect through the real server and a local DNS server:
block- and allow-list weights, enforce (554 5.7.1 at RCPT naming the zone)
and record (junk, listings stored), zones that answer garbage or list
everything (not listed, logged once), a zone that does not answer (the 220
does not wait; counted as not listed after DNSBL_TIMEOUT; no mail lost)."""

from __future__ import annotations

import re
import time

import pytest

from .defence_helpers import greeting, send, stored
from .dnsserver import DnsServer
from .helpers import eventually

ZONES = {
    ("5.0.0.127.bl.test", "A"): ["127.0.0.2"],  # 127.0.0.5 is listed...
    ("6.0.0.127.bl.test", "A"): ["127.0.0.2"],
    ("6.0.0.127.wl.test", "A"): ["127.0.0.10"],  # ...127.0.0.6 too, but allow-listed
    ("9.0.0.127.bl.test", "A"): ["127.0.0.99"],  # a code the pattern does not count
    ("5.0.0.127.broken.test", "A"): ["127.255.255.254"],  # "your resolver is blocked"
    ("7.0.0.127.broken.test", "A"): ["10.1.2.3"],
    ("1.0.0.127.all.test", "A"): ["127.0.0.2"],  # lists its own test entry: lists all
    ("5.0.0.127.all.test", "A"): ["127.0.0.2"],
}
SETTINGS = {
    "dnsbl_zones": "bl.test=127.0.0.[2..11]*2,broken.test,all.test*5",
    "dnswl_zones": "wl.test*2",
    "dnsbl_threshold": "2",
}


@pytest.fixture
def dns():
    server = DnsServer(ZONES)
    yield server
    server.stop()


def test_enforce_refuses_listed_clients_at_rcpt(make_server, database_url, dns):
    server = make_server(dns_resolver=dns.address, dnsbl_checks="enforce", **SETTINGS)
    assert send(server.port, source="127.0.0.5") == (
        "RCPT",
        554,
        b"5.7.1 Service unavailable; client [127.0.0.5] blocked using bl.test",
    )
    server.wait_for_log(r"refused 127\.0\.0\.5: dnsbl \(x@example\.com\)")
    _, code, reply = send(server.port, source="127.0.0.6")
    assert code == 250  # 2 - 2: the allow-list wins
    facts = stored(database_url, reply)["verdicts"]["dnsbl"]
    assert facts["score"] == 0 and {z["zone"] for z in facts["listed"]} == {"bl.test", "wl.test"}
    _, code, reply = send(server.port, source="127.0.0.9")
    assert code == 250  # 127.0.0.99 is outside bl.test's pattern
    for source in ("127.0.0.7", "127.0.0.7"):
        _, code, reply = send(server.port, source=source)
        assert code == 250
    row = stored(database_url, reply)
    assert row["junk"] is False
    assert row["verdicts"]["dnsbl"]["unchecked"] == ["all.test", "broken.test"]
    assert len(re.findall(r"broken\.test answered 10\.1\.2\.3", server.log)) == 1
    assert len(re.findall(r"all\.test lists 127\.0\.0\.1", server.log)) == 1


def test_record_stores_listed_mail_as_junk(make_server, database_url, dns):
    server = make_server(dns_resolver=dns.address, **SETTINGS)  # DNSBL_CHECKS=record
    _, code, reply = send(server.port, source="127.0.0.5")
    assert code == 250
    row = stored(database_url, reply)
    assert row["junk"] is True
    assert row["verdicts"]["reasons"] == ["dnsbl: listed by bl.test (score 2 >= 2)"]
    assert row["verdicts"]["dnsbl"]["listed"] == [
        {"zone": "bl.test", "codes": ["127.0.0.2"], "weight": 2.0}
    ]


def test_silent_zone_delays_no_greeting_and_loses_no_mail(make_server, database_url, dns):
    server = make_server(
        dns_resolver=dns.address, dnsbl_checks="enforce", dnsbl_timeout="8", **SETTINGS
    )
    dns.zone.silent = True
    asked = len(dns.zone.queries)
    started = time.monotonic()
    assert greeting(server.port, "127.0.0.5").startswith(b"220 ")
    # The 220 came before the lookups could end (the zone never answers; they wait 8 s).
    assert time.monotonic() - started < 8
    eventually(lambda: len(dns.zone.queries) > asked)  # they were sent
    _, code, reply = send(server.port, source="127.0.0.5")
    assert code == 250  # no answer by DNSBL_TIMEOUT: not listed
    row = stored(database_url, reply)
    unchecked = row["verdicts"]["dnsbl"]["unchecked"]
    assert unchecked == ["all.test", "bl.test", "broken.test", "wl.test"]
    server.wait_for_log(r"bl\.test no answer within 8s: counted as not listed")
