"""Matching rules of policy.py, table-driven, plus properties with hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.policy import (
    Lists,
    Verdict,
    build_bans,
    build_domains,
    check_recipient,
    check_sender,
    normalize_domain,
)

DOMAIN_ROWS = [
    {"domain": "example.com", "active": True},
    {"domain": "*.wild.test", "active": True},
    {"domain": " Trailing.Test. ", "active": True},
    {"domain": "off.test", "active": False},
    {"domain": "例え.jp", "active": None},  # NULL active counts as active
    {"domain": None, "active": True},  # malformed: skipped
    {"domain": "bad domain", "active": True},  # malformed: skipped
]
BAN_ROWS = [
    {"scope": "email", "value": "Spammer@Bad.test", "match_type": "exact", "status": "active"},
    {"scope": "email", "value": "promo", "match_type": "contains", "status": "active"},
    {"scope": "domain", "value": "evil.test", "match_type": "exact", "status": "active"},
    {"scope": "domain", "value": "*.sub-only.test", "match_type": "exact", "status": "active"},
    {"scope": "email", "value": "old@bad.test", "match_type": "exact", "status": "inactive"},
    {"scope": "ip", "value": "1.2.3.4", "match_type": "exact", "status": "active"},  # unknown
    {"scope": "email", "value": None, "match_type": "exact", "status": "active"},  # NULL
]


def lists(**overrides) -> Lists:
    domains, _ = build_domains(DOMAIN_ROWS)
    bans, _ = build_bans(BAN_ROWS)
    return Lists(domains=domains, bans=bans, **overrides)


@pytest.mark.parametrize(
    "rcpt, verdict",
    [
        ("a@example.com", Verdict.OK),
        ("a@EXAMPLE.COM.", Verdict.OK),  # case and trailing dot
        ("a@sub.example.com", Verdict.DOMAIN_NOT_ALLOWED),  # exact entry: apex only
        ("a@wild.test", Verdict.DOMAIN_NOT_ALLOWED),  # *. entry: not the apex
        ("a@x.wild.test", Verdict.OK),
        ("a@x.y.z.wild.test", Verdict.OK),  # any depth
        ("a@notwild.test", Verdict.DOMAIN_NOT_ALLOWED),  # suffix, not a subdomain
        ("a@trailing.test", Verdict.OK),  # entry trimmed and lowered
        ("a@off.test", Verdict.DOMAIN_NOT_ALLOWED),  # inactive row
        ("a@例え.jp", Verdict.OK),  # IDN, either form
        ("a@xn--r8jz45g.jp", Verdict.OK),
        ("a@[127.0.0.1]", Verdict.DOMAIN_NOT_ALLOWED),  # IP literal
        ("no-at-sign", Verdict.DOMAIN_NOT_ALLOWED),
    ],
)
def test_recipient_whitelist(rcpt, verdict):
    assert check_recipient(lists(), rcpt) is verdict


@pytest.mark.parametrize(
    "sender, verdict",
    [
        ("ok@good.test", Verdict.OK),
        ("spammer@bad.test", Verdict.SENDER_BANNED),  # exact, case-insensitive
        ("SPAMMER@BAD.TEST", Verdict.SENDER_BANNED),
        ("spammer2@bad.test", Verdict.OK),
        ("old@bad.test", Verdict.OK),  # inactive ban
        ("hot-PROMO-deals@x.test", Verdict.SENDER_BANNED),  # contains
        ("a@evil.test", Verdict.DOMAIN_BANNED),  # domain and
        ("a@mail.evil.test", Verdict.DOMAIN_BANNED),  # its subdomains
        ("a@notevil.test", Verdict.OK),
        ("a@sub-only.test", Verdict.OK),  # *. entry: subdomains only
        ("a@x.sub-only.test", Verdict.DOMAIN_BANNED),
        ("", Verdict.OK),  # null sender allowed by default
    ],
)
def test_sender_bans(sender, verdict):
    assert check_sender(lists(), sender) is verdict


def test_null_sender_banned_explicitly():
    bans, _ = build_bans(
        [{"scope": "email", "value": "<>", "match_type": "exact", "status": "active"}]
    )
    assert check_sender(Lists(domains=None, bans=bans, whitelist_enabled=False), "") is (
        Verdict.SENDER_BANNED
    )


def test_malformed_rows_are_reported_not_fatal():
    _, domain_problems = build_domains(DOMAIN_ROWS)
    _, ban_problems = build_bans(BAN_ROWS)
    assert len(domain_problems) == 2 and len(ban_problems) == 2


def test_not_loaded_refuses_and_disabled_accepts():
    empty = Lists()
    assert check_recipient(empty, "a@example.com") is Verdict.NOT_LOADED
    assert check_sender(empty, "a@b.test") is Verdict.NOT_LOADED
    off = Lists(whitelist_enabled=False, bans_enabled=False)
    assert check_recipient(off, "a@anything.test") is Verdict.OK
    assert check_sender(off, "spammer@bad.test") is Verdict.OK
    loaded_empty = Lists(domains=build_domains([])[0], bans=build_bans([])[0])
    assert check_recipient(loaded_empty, "a@example.com") is Verdict.DOMAIN_NOT_ALLOWED


label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
domain = st.lists(label, min_size=2, max_size=4).map(".".join)


@given(base=domain, sub=st.lists(label, min_size=1, max_size=4).map(".".join))
def test_any_subdomain_under_a_wildcard_is_allowed(base, sub):
    domains, _ = build_domains([{"domain": "*." + base, "active": True}])
    assert check_recipient(Lists(domains=domains, bans_enabled=False), f"u@{sub}.{base}") is (
        Verdict.OK
    )


@given(listed=st.lists(domain, max_size=5), wild=st.lists(domain, max_size=5), candidate=domain)
def test_unlisted_domain_is_never_allowed(listed, wild, candidate):
    rows = [{"domain": d, "active": True} for d in listed] + [
        {"domain": "*." + d, "active": True} for d in wild
    ]
    domains, _ = build_domains(rows)
    allowed = candidate in listed or any(candidate.endswith("." + w) for w in wild)
    verdict = check_recipient(Lists(domains=domains, bans_enabled=False), f"u@{candidate}")
    assert (verdict is Verdict.OK) == allowed


def test_normalize_domain():
    assert normalize_domain("  Example.COM. ") == "example.com"
    assert normalize_domain("例え.jp") == "xn--r8jz45g.jp"
    assert normalize_domain("a..b") is None
    assert normalize_domain("x" * 64 + ".com") is None
    assert normalize_domain("") is None
