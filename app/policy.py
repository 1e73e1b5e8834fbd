"""Policy stage: who may send, to whom. Pure functions over a Lists snapshot.

Matching rules (DESIGN.md, Cybertemp's documented semantics):
- whitelist `example.com` matches exactly that domain; `*.example.com` any
  subdomain at any depth, not the apex. Inactive rows are ignored.
- bans (status 'active' only): scope 'email' (Cybertemp also writes
  'sender') matches the envelope sender, `exact` (also a NULL match_type)
  or `contains` (substring); scope 'domain' matches the sender's
  domain and its subdomains (`*.example.com`: subdomains only).
- The null sender `<>` is allowed unless an exact email ban says `<>`.
- Comparison is case-insensitive, trailing dots and spaces trimmed, IDN in
  punycode. A malformed row is skipped and reported, never fatal.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .rules import Rule


class Verdict(enum.Enum):
    OK = "ok"
    NOT_LOADED = "lists not loaded"
    DOMAIN_NOT_ALLOWED = "domain not allowed"
    SENDER_BANNED = "sender banned"
    DOMAIN_BANNED = "domain banned"


@functools.lru_cache(maxsize=4096)  # pure, bounded: recipient domains repeat
def normalize_domain(text: str | None) -> str | None:
    """Lower-case punycode form of a domain, or None if it is not one."""
    if not text:
        return None
    domain = text.strip().rstrip(".").lower()
    if not domain or len(domain) > 255:
        return None
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    labels = domain.split(".")
    if any(not label or len(label) > 63 for label in labels):
        return None
    if any(not all(c.isalnum() or c in "-_" for c in label) for label in labels):
        return None
    return domain


def normalize_pattern(text: str | None) -> tuple[str, bool] | None:
    """('example.com', wildcard?) for a list entry, or None if malformed."""
    if not text:
        return None
    entry = text.strip()
    wildcard = entry.startswith("*.")
    domain = normalize_domain(entry[2:] if wildcard else entry)
    return (domain, wildcard) if domain else None


def canonical_pattern(text: str | None) -> str | None:
    """A list entry as stored: `example.com` or `*.example.com`, or None if malformed."""
    pattern = normalize_pattern(text)
    return None if pattern is None else ("*." if pattern[1] else "") + pattern[0]


def normalize_address(address: str) -> str:
    """The one normal form of an address, wherever one is compared (the
    writer's mailbox_owner, the lists, the API's access rules, retention):
    spaces around it and a final dot trimmed, lower case, the domain in
    punycode. A domain that is not one is kept, trimmed and lower-cased."""
    local, at, domain = address.strip().rpartition("@")
    if not at:
        return address.strip().lower()
    return f"{local.lower()}@{normalize_domain(domain) or domain.strip().lower()}"


def address_spellings(addresses: Iterable[str]) -> list[str]:
    """The texts that stand for normalised `addresses` where SQL compares
    stored addresses (after db.folded: trimmed, final dot gone, lower case):
    each address, and for an IDN domain its Unicode form too
    (`vip@例え.jp` for `vip@xn--r8jz45g.jp`), as websites write
    private_email rows and as Cybertemp stored mailbox_owner."""
    spellings = set()
    for address in addresses:
        spellings.add(address)
        local, _, domain = address.rpartition("@")
        if "xn--" in domain:
            try:
                spellings.add(f"{local}@{domain.encode('ascii').decode('idna').lower()}")
            except UnicodeError:
                pass  # not a valid IDN: only its own spelling
    return sorted(spellings)


def _under(domain: str, suffixes: frozenset[str]) -> bool:
    """True if a proper parent domain of `domain` is in `suffixes`."""
    position = domain.find(".")
    while position != -1:
        if domain[position + 1 :] in suffixes:
            return True
        position = domain.find(".", position + 1)
    return False


@dataclasses.dataclass(frozen=True)
class DomainList:
    exact: frozenset[str] = frozenset()
    wildcard: frozenset[str] = frozenset()

    def __len__(self) -> int:
        return len(self.exact) + len(self.wildcard)

    def matches(self, domain: str) -> bool:
        return domain in self.exact or _under(domain, self.wildcard)


@dataclasses.dataclass(frozen=True)
class Bans:
    emails: frozenset[str] = frozenset()
    email_substrings: tuple[str, ...] = ()
    # `example.com` bans the domain itself and every subdomain;
    # `*.example.com` bans only the subdomains.
    domain_apexes: frozenset[str] = frozenset()
    domain_parents: frozenset[str] = frozenset()

    def __len__(self) -> int:
        return len(self.emails) + len(self.email_substrings) + len(self.domain_parents)


@dataclasses.dataclass(frozen=True)
class Lists:
    """One immutable snapshot; refreshes build a new one and swap it whole.

    A None part has not been loaded yet: checks that need it answer
    NOT_LOADED (451), never accept-all.
    """

    whitelist_enabled: bool = True
    bans_enabled: bool = True
    domains: DomainList | None = None
    bans: Bans | None = None
    private: frozenset[str] | None = None
    # Inbound defence: the operator's rules (in evaluation order), and the
    # pause switch's reason (None: receiving). Not needed to start.
    rules: tuple[Rule, ...] = ()
    paused: str | None = None

    @property
    def ready(self) -> bool:
        return (not self.whitelist_enabled or self.domains is not None) and (
            not self.bans_enabled or self.bans is not None
        )


# RFC 5321 4.5.3.1: local part 64 octets, domain 255, path 256 (with the <>).
LOCAL_PART_MAX, DOMAIN_MAX, PATH_MAX = 64, 255, 256


def bad_characters(text: str) -> bool:
    """Control characters (NUL included) or bytes that were not UTF-8
    (aiosmtpd keeps them as lone surrogates): PostgreSQL would refuse them."""
    return any(ord(c) < 32 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF for c in text)


def address_problem(address: str) -> str | None:
    """Why `address` (as parsed from MAIL/RCPT) is not a usable mailbox, or None.

    Quoted local parts are fine (aiosmtpd parsed them); IP literals are valid
    syntax here (RCPT refuses them by policy: they are never our domains).
    """
    if len(address.encode("utf-8", "surrogateescape")) + 2 > PATH_MAX:
        return "too long"
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return "syntax"
    if len(local.encode("utf-8", "surrogateescape")) > LOCAL_PART_MAX:
        return "too long"
    if len(domain) > DOMAIN_MAX:
        return "too long"
    if bad_characters(address):
        return "syntax"
    if domain.startswith("[") and domain.endswith("]"):
        return None
    return None if normalize_domain(domain) else "syntax"


def check_sender(lists: Lists, mail_from: str) -> Verdict:
    """Verdict for MAIL FROM (`mail_from` is '' for the null sender)."""
    if not lists.bans_enabled:
        return Verdict.OK
    if lists.bans is None:
        return Verdict.NOT_LOADED
    bans = lists.bans
    if not mail_from:
        return Verdict.SENDER_BANNED if "<>" in bans.emails else Verdict.OK
    address = normalize_address(mail_from)
    if address in bans.emails or any(part in address for part in bans.email_substrings):
        return Verdict.SENDER_BANNED
    domain = address.rpartition("@")[2]
    if domain in bans.domain_apexes or _under(domain, bans.domain_parents):
        return Verdict.DOMAIN_BANNED
    return Verdict.OK


def check_recipient(lists: Lists, rcpt: str) -> Verdict:
    """Verdict for RCPT TO: is the recipient's domain one of ours?"""
    if not lists.whitelist_enabled:
        return Verdict.OK
    if lists.domains is None:
        return Verdict.NOT_LOADED
    domain = normalize_domain(rcpt.rpartition("@")[2])
    if domain is None or not lists.domains.matches(domain):
        return Verdict.DOMAIN_NOT_ALLOWED
    return Verdict.OK


# Building snapshots from table rows ------------------------------------------------


def build_domains(rows: Iterable[Mapping[str, Any]]) -> tuple[DomainList, list[str]]:
    """DomainList from `domains` rows, and one problem line per skipped row."""
    exact: set[str] = set()
    wildcard: set[str] = set()
    problems = []
    for row in rows:
        if row.get("active") is False:
            continue
        pattern = normalize_pattern(row.get("domain"))
        if pattern is None:
            problems.append(f"domains: skipped malformed domain {row.get('domain')!r}")
            continue
        (wildcard if pattern[1] else exact).add(pattern[0])
    return DomainList(frozenset(exact), frozenset(wildcard)), problems


def build_bans(rows: Iterable[Mapping[str, Any]]) -> tuple[Bans, list[str]]:
    emails: set[str] = set()
    substrings: set[str] = set()
    domains_exact: set[str] = set()
    domains_wild: set[str] = set()
    problems = []
    for row in rows:
        if (row.get("status") or "").strip().lower() != "active":
            continue
        scope = (row.get("scope") or "").strip().lower()
        scope = "email" if scope == "sender" else scope  # Cybertemp's name for it
        value = (row.get("value") or "").strip()
        match_type = (row.get("match_type") or "exact").strip().lower()
        if scope == "email" and value and match_type == "exact":
            emails.add(value if value == "<>" else normalize_address(value))
        elif scope == "email" and value and match_type == "contains":
            substrings.add(value.lower())
        elif scope == "domain" and (pattern := normalize_pattern(value)):
            (domains_wild if pattern[1] else domains_exact).add(pattern[0])
        else:
            problems.append(
                f"bans: skipped malformed row scope={row.get('scope')!r} "
                f"value={row.get('value')!r} match_type={row.get('match_type')!r}"
            )
    bans = Bans(
        emails=frozenset(emails),
        email_substrings=tuple(sorted(substrings)),
        domain_apexes=frozenset(domains_exact),
        domain_parents=frozenset(domains_exact | domains_wild),
    )
    return bans, problems


def build_private(rows: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    return frozenset(normalize_address(r["email"]) for r in rows if r.get("email"))
