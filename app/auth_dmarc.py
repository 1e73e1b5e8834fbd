"""DMARC policy, pure: the organizational domain, the From domains, a
record's outcome for the identities that passed, pct sampling, and which of
several verdicts is the strictest.

DMARC is given the From domain we parse ourselves (authheaders' extraction
cut `bank-of-trust.com` to `bank`), and its `pct` is applied (RFC 7489
6.6.4: a message outside the sample gets the next less strict policy).
app/auth.py looks the records up and applies what this module decides.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
from email.utils import getaddresses

import dmarc
from publicsuffix2 import PublicSuffixList

from .model import Envelope
from .policy import normalize_domain

# Strictest first: with several From domains the strictest policy applies.
DISPOSITIONS = ("reject", "quarantine", "none")


@functools.cache
def _public_suffixes() -> PublicSuffixList:
    ref = importlib.resources.files("authheaders") / "public_suffix_list.txt"
    with importlib.resources.as_file(ref) as path, open(path, encoding="utf-8") as lines:
        return PublicSuffixList(lines)


@functools.lru_cache(maxsize=65536)
def org_domain(domain: str) -> str:
    """The organizational domain (RFC 7489 3.2) by authheaders' public-suffix list.

    A TLD the list does not know is a public suffix by the list's default
    rule `*`: the organizational domain is one label below it (publicsuffix2
    would give the TLD itself, making every domain under it "aligned").
    """
    known = _public_suffixes().get_public_suffix(domain, strict=True)
    if known is not None:
        return str(known)
    return ".".join(domain.split(".")[-2:])


class _OrganizationalDomains:
    """The public-suffix interface the dmarc library asks for, memoized."""

    def get_public_suffix(self, domain: str) -> str:
        return org_domain(domain)


_PSL = _OrganizationalDomains()


def from_domains(headers: list[tuple[bytes, bytes]]) -> list[str]:
    """The domains of the header From addresses, lower case, IDNs in punycode."""
    return list(_from_domains(tuple(v for f, v in headers if f.lower() == b"from")))


@functools.lru_cache(maxsize=4096)  # a sender's From header repeats message after message
def _from_domains(values: tuple[bytes, ...]) -> tuple[str, ...]:
    texts = [v.decode("utf-8", "replace") for v in values]
    found = (normalize_domain(a.rpartition("@")[2]) for _, a in getaddresses(texts) if "@" in a)
    return tuple(dict.fromkeys(domain for domain in found if domain))


def sampled(envelope: Envelope, pct: int) -> bool:
    """RFC 7489 6.6.4 sampling, deterministic per message: is it in the pct%?"""
    return envelope.id.int % 100 < pct


@functools.lru_cache(maxsize=4096)  # pure on its inputs, which repeat per sender
def dmarc_outcome(
    record: str,
    domain: str,
    found_at: str | None,
    spf_domain: str | None,
    dkim_domains: tuple[str, ...],
) -> tuple[str, str, int]:
    """(pass, fail or permerror; the published disposition; pct) of the DMARC
    `record` for the From `domain`, found at the organizational domain
    `found_at` (None: at the domain itself), given the identities that passed."""
    try:
        # strict=False: a bad tag value falls back to its default (RFC 7489
        # 6.3) rather than voiding the whole policy, as a typo in rua= would.
        policy = dmarc.DMARC(_PSL).parse_record(record, domain, org_domain=found_at, strict=False)
    except dmarc.Error:
        return "permerror", "none", 100
    passes = dmarc.AuthResults(
        spf=dmarc.SPF(spf_domain, dmarc.SPFResult.PASS) if spf_domain else None,
        dkim=[dmarc.DKIM(d, dmarc.DKIMResult.PASS) for d in dkim_domains],
    )
    outcome = dmarc.DMARC(_PSL).get_result(policy, auth_results=passes)
    if outcome.result is dmarc.DMARCResult.PASS:
        return "pass", "none", policy.pct
    return "fail", outcome.disposition.value, policy.pct


@dataclasses.dataclass(frozen=True)
class DmarcVerdict:
    result: str  # pass, fail, none, permerror
    domain: str
    applied: str | None  # the disposition applied after pct: none, quarantine, reject
    comment: str | None = None


def applied_disposition(envelope: Envelope, published: str, pct: int) -> str:
    """The disposition applied to a failing `envelope`: `published`, or outside
    the pct sample the next less strict one (RFC 7489 6.6.4)."""
    if pct < 100 and not sampled(envelope, pct):
        return {"reject": "quarantine", "quarantine": "none"}.get(published, published)
    return published


def strictness(verdict: DmarcVerdict) -> int:
    """Sort key: the strictest applied disposition first, no disposition last."""
    return DISPOSITIONS.index(verdict.applied) if verdict.applied else len(DISPOSITIONS)
