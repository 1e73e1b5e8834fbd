"""The defence's pure functions on their own: zone syntax and scoring, rule
compilation and evaluation across SMTP steps, link and file judgements, the
verdicts builder."""

from __future__ import annotations

import pytest

from app import content, reputation, rules, verdicts
from app.model import Finding


def test_zone_syntax_and_scoring():
    zones = reputation.parse_zones("zen.example=127.0.0.[2..4;10]*2, bl.example")
    assert [str(z) for z in zones] == ["zen.example*2", "bl.example*1"]
    assert reputation.parse_zones("wl.example*3", allow=True)[0].weight == -3
    for bad in ("nodots", "zen.example=127.0.0", "zen.example=127.0.0.[9..300]", "a.b*x"):
        with pytest.raises(ValueError):
            reputation.parse_zones(bad)
    assert reputation.counts(zones[0], ["127.0.0.3", "127.0.0.5"]) == ("127.0.0.3",)
    result = reputation.score([(zones[0], ("127.0.0.10",)), (zones[1], None)], ["x.example"])
    assert result.score == 2 and result.unchecked == ("x.example",)
    assert reputation.query_name("192.0.2.1", "z.example") == "1.2.0.192.z.example"
    assert reputation.query_name("::ffff:192.0.2.1", "z") == "1.2.0.192.z"
    assert reputation.query_name("2001:db8::1", "z").startswith("1.0.0.0.")
    assert reputation.garbage(["127.255.255.254"]) and reputation.garbage(["10.0.0.1"])
    assert reputation.garbage(["127.0.0.2"]) is None


def test_rules_wait_for_their_step():
    ruleset, problems = rules.build_rules(
        [
            {"id": 1, "priority": 1, "action": "accept", "subject_regex": "hello"},
            {"id": 2, "priority": 2, "action": "reject", "sender": "*@spam.example"},
            {"id": 3, "action": "junk", "subject_regex": "(?<=x)"},
        ]
    )
    assert [r.id for r in ruleset] == [1, 2] and "rule 3: skipped" in problems[0]
    mail_step = rules.Facts(client="192.0.2.1", sender="a@spam.example")
    assert rules.evaluate(ruleset, mail_step) == rules.UNDECIDED  # rule 1 needs the subject
    data = rules.Facts("192.0.2.1", "a@spam.example", ("x@example.com",), [], "hi", 10, False, 3)
    match = rules.evaluate(ruleset, data)
    assert isinstance(match, rules.Match) and match.rule.id == 2
    hello = rules.evaluate(ruleset, rules.Facts(**{**data.__dict__, "subject": "hello"}))
    assert isinstance(hello, rules.Match) and hello.rule.action == "accept"


def test_link_and_file_judgements():
    assert content.lookalike("xn--pypal-4ve.com")  # Cyrillic a among Latin letters
    assert not content.lookalike("xn--r8jz45g.jp")  # Japanese: no imitation
    signs = content.link_signs('<a href="https://login.bank.example">bank.example</a>', "")
    assert signs == {}  # a subdomain of the named domain is fine
    assert content.kind_of(b"MZ" + b"\0" * 100).startswith("executable")
    assert content.kind_of(b"%PDF-1.7\n") is None
    assert content.name_kind("invoice.pdf.exe") == "a .exe file"
    assert content.head_of("TVq" + "Q" * 100, "base64").startswith(b"MZ")


def test_verdicts_builder():
    assert verdicts.build([]) is None
    built = verdicts.build(
        [Finding("dnsbl", False, "", {"score": 0}), Finding("rule", True, "rule 1", {"id": 1})]
    )
    assert built == {
        "junk": True,
        "reasons": ["rule: rule 1"],
        "dnsbl": {"score": 0},
        "rule": {"id": 1},
    }


def test_spooled_messages_keep_their_dialogue_findings(tmp_path):
    from app.model import Envelope
    from app.spool import Spool

    found = Finding("dnsbl", True, "listed by bl.example (score 2 >= 1)", {"score": 2.0})
    envelope = Envelope.new(
        "a@b.example", ("x@example.com",), b"Subject: x\r\n\r\nx", "192.0.2.1", "h"
    )
    envelope = Envelope(**{**envelope.__dict__, "findings": (found,)})
    spool = Spool(tmp_path)
    spool.check_writable()
    spool.save_pending([envelope])
    [(_, replayed)] = list(spool.pending())
    assert replayed.findings == (found,)


def test_data_replies_wait_only_for_reject_rules_decided_there():
    def ruleset(*rows: dict) -> tuple:
        return rules.build_rules([{"id": n, **row} for n, row in enumerate(rows, 1)])[0]

    sender_reject = {"action": "reject", "sender": "*@x.example"}
    subject_junk = {"action": "junk", "subject_regex": "x"}
    subject_reject = {"action": "reject", "subject_regex": "x"}
    assert not rules.refuses_at_data(ruleset(sender_reject, subject_junk))
    assert rules.refuses_at_data(ruleset(subject_junk, sender_reject))  # held back to DATA
    assert rules.refuses_at_data(ruleset(subject_reject))
    assert not rules.refuses_at_data(())
