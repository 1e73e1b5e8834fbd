"""Rules stage: the operator's `rules` table, compiled once per refresh and
matched by pure functions.

A rule's conditions (all given ones must match; an empty one matches
anything): recipient glob, sender glob, client network, a header's value
(name + regex), subject regex, size range, has attachments. Its action:
`reject` (its reply, RFC-valid, checked when it is added), `junk`, or
`accept` (stop evaluating rules). Rules are taken in `priority` order (then
`id`), and the first that matches decides.

Each rule is decided at the earliest SMTP step that has its data: client
and sender at MAIL, recipients at RCPT, headers, subject, size and
attachments at the end of DATA (the prepare stage). A rule that cannot be
decided yet stops the evaluation at that step, so a later `accept` of
higher priority is never overtaken by an earlier `reject`.

Regexes are RE2 (google-re2): linear time, no backtracking, so no pattern
can stall a worker; they are checked when added and again when loaded, and
matched against at most MATCH_LIMIT characters of a value. Linear in the
input, but times the size of the pattern's program when RE2 falls back from
its DFA to its NFA: a pattern is refused past PROGRAM_MAX instructions
(`.{1,1000}viagra` is 9009), and the DFA gets RE2's default memory (with
1 MiB it fell back at once: that pattern took 42 s on a 256 KiB header).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import re2

from .clients import client_address
from .model import Finding

ACTIONS = ("reject", "junk", "accept")
MATCH_LIMIT = 16 * 1024  # characters of a header value or subject a regex sees (the parser's cap)
PROGRAM_MAX = 2000  # RE2 instructions of one rule's regex
REGEX_MEMORY = 8 << 20  # bytes one regex may use (RE2's default)
DEFAULT_REPLY = "550 5.7.1 Message refused by policy"
# RFC 5321 4.2 + RFC 3463: a 4xx/5xx code, its enhanced code of the same class, text.
REPLY = re.compile(r"([45])[0-5][0-9] ([45])\.[0-9]{1,3}\.[0-9]{1,3} [\x20-\x7e]{1,400}")
COLUMNS = (
    "id",
    "priority",
    "recipient",
    "sender",
    "client",
    "header_name",
    "header_regex",
    "subject_regex",
    "size_min",
    "size_max",
    "has_attachments",
    "action",
    "reply",
    "note",
    "active",
)

MAIL, RCPT, DATA = 1, 2, 3  # the SMTP steps, in order


class RuleError(ValueError):
    """A rule that cannot be used; str() says why, in one line."""


def _regex(text: str | None, what: str) -> Any:
    if text is None or text == "":
        return None
    options = re2.Options()
    options.log_errors = False  # the error is raised and reported by us
    options.max_mem = REGEX_MEMORY
    try:
        compiled = re2.compile(text, options)
    except re2.error as error:
        detail = error.args[0] if error.args else error
        detail = detail.decode() if isinstance(detail, bytes) else detail
        raise RuleError(f"{what} {text!r} is not a valid RE2 regex: {detail}") from None
    if compiled.programsize > PROGRAM_MAX:
        raise RuleError(
            f"{what} {text!r} is too large ({compiled.programsize} RE2 instructions, at most "
            f"{PROGRAM_MAX}): use shorter counted repetitions such as .{{1,100}}"
        )
    return compiled


@dataclasses.dataclass(frozen=True)
class Rule:
    id: int
    priority: int
    action: str
    recipient: str | None = None
    sender: str | None = None
    client: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    header_name: str | None = None
    header_regex: Any = None
    subject_regex: Any = None
    size_min: int | None = None
    size_max: int | None = None
    has_attachments: bool | None = None
    reply: str = DEFAULT_REPLY
    note: str = ""

    @property
    def step(self) -> int:
        """The earliest SMTP step that has all this rule's data."""
        if (
            self.header_regex is not None
            or self.subject_regex is not None
            or self.size_min is not None
            or self.size_max is not None
            or self.has_attachments is not None
        ):
            return DATA
        return RCPT if self.recipient is not None else MAIL


def check_reply(text: str | None) -> str:
    """A reject rule's reply as stored; RuleError unless it is a valid SMTP reply."""
    if not text:
        return DEFAULT_REPLY
    match = REPLY.fullmatch(text.strip())
    if match is None or match[1] != match[2]:
        raise RuleError(
            f"reply {text!r} is not an SMTP refusal: expected '550 5.7.1 text' "
            "(4xx or 5xx, an enhanced code of the same class, printable ASCII)"
        )
    return text.strip()


def compile_rule(row: Mapping[str, Any]) -> Rule:
    """A Rule from a `rules` row; RuleError (one line) if it is unusable."""
    action = str(row.get("action") or "").strip().lower()
    if action not in ACTIONS:
        raise RuleError(f"action {row.get('action')!r} is not one of {', '.join(ACTIONS)}")
    client = row.get("client")
    try:
        network = ipaddress.ip_network(str(client), strict=False) if client else None
    except ValueError:
        raise RuleError(f"client {client!r} is not a network (CIDR)") from None
    header_name = (row.get("header_name") or "").strip() or None
    header_regex = _regex(row.get("header_regex"), "header_regex")
    if (header_name is None) != (header_regex is None):
        raise RuleError("header_name and header_regex go together")
    size_min, size_max = row.get("size_min"), row.get("size_max")
    if size_min is not None and size_max is not None and int(size_min) > int(size_max):
        raise RuleError(f"size_min {size_min} is above size_max {size_max}")
    rule = Rule(
        id=int(row.get("id") or 0),
        priority=int(row.get("priority") or 0) if row.get("priority") is not None else 100,
        action=action,
        recipient=(row.get("recipient") or "").strip().lower() or None,
        sender=None if row.get("sender") is None else str(row["sender"]).strip().lower(),
        client=network,
        header_name=header_name.lower() if header_name else None,
        header_regex=header_regex,
        subject_regex=_regex(row.get("subject_regex"), "subject_regex"),
        size_min=None if size_min is None else int(size_min),
        size_max=None if size_max is None else int(size_max),
        has_attachments=row.get("has_attachments"),
        reply=check_reply(row.get("reply")) if action == "reject" else DEFAULT_REPLY,
        note=str(row.get("note") or ""),
    )
    if rule == Rule(rule.id, rule.priority, action, reply=rule.reply, note=rule.note):
        raise RuleError("a rule needs at least one condition (it would match every message)")
    return rule


def build_rules(rows: Iterable[Mapping[str, Any]]) -> tuple[tuple[Rule, ...], list[str]]:
    """The active rules in evaluation order, and one problem line per row skipped."""
    rules, problems = [], []
    for row in rows:
        if row.get("active") is False:
            continue
        try:
            rules.append(compile_rule(row))
        except (RuleError, TypeError, ValueError) as error:
            problems.append(f"rule {row.get('id')}: skipped: {error}")
    rules.sort(key=lambda rule: (rule.priority, rule.id))
    return tuple(rules), problems


@dataclasses.dataclass(frozen=True)
class Facts:
    """What is known of a message at one SMTP step (None: not known yet)."""

    client: str | None = None
    sender: str | None = None  # "" for the null sender
    recipients: tuple[str, ...] | None = None
    headers: Sequence[tuple[str, str]] | None = None  # (lower-case name, value)
    subject: str | None = None
    size: int | None = None
    has_attachments: bool | None = None
    step: int = MAIL


@dataclasses.dataclass(frozen=True)
class Match:
    rule: Rule
    why: tuple[str, ...]  # one line per condition that matched


@functools.lru_cache(maxsize=4096)  # clients come back; parsing costs more than the test
def _address(client: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    return client_address(client)  # an IPv4-mapped IPv6 address as IPv4


def _in_network(client: str, network: Any) -> bool:
    address = _address(client)
    return address is not None and address in network


def _conditions(rule: Rule, facts: Facts) -> Iterable[tuple[bool, str]]:
    """(matched, why) for each condition of `rule`, in order of the SMTP steps."""
    if rule.client is not None:
        client = facts.client or ""
        yield _in_network(client, rule.client), f"client {client} is in {rule.client}"
    if rule.sender is not None:
        sender = (facts.sender or "").lower()
        yield fnmatch.fnmatchcase(sender, rule.sender), f"sender <{sender}> matches {rule.sender}"
    if rule.recipient is not None and facts.recipients is not None:
        hit = next((r for r in facts.recipients if fnmatch.fnmatchcase(r, rule.recipient)), None)
        yield hit is not None, f"recipient <{hit}> matches {rule.recipient}"
    if facts.step < DATA:
        return
    if rule.header_regex is not None:
        value = next(
            (
                v
                for name, v in facts.headers or ()
                if name == rule.header_name and rule.header_regex.search(v[:MATCH_LIMIT])
            ),
            None,
        )
        pattern = rule.header_regex.pattern
        yield value is not None, f"header {rule.header_name} matches {pattern!r}"
    if rule.subject_regex is not None:
        subject = (facts.subject or "")[:MATCH_LIMIT]
        found = rule.subject_regex.search(subject) is not None
        yield found, f"subject matches {rule.subject_regex.pattern!r}"
    size = facts.size or 0
    if rule.size_min is not None:
        yield size >= rule.size_min, f"size {size} >= {rule.size_min}"
    if rule.size_max is not None:
        yield size <= rule.size_max, f"size {size} <= {rule.size_max}"
    if rule.has_attachments is not None:
        has = bool(facts.has_attachments)
        yield has == rule.has_attachments, f"has attachments: {'yes' if has else 'no'}"


UNDECIDED = "undecided"


def evaluate(rules: Sequence[Rule], facts: Facts) -> Match | str | None:
    """The first rule in order that matches `facts`; UNDECIDED when a rule
    before any match needs data this step does not have; None: no rule matches."""
    for rule in rules:
        why = []
        for matched, reason in _conditions(rule, facts):
            if not matched:
                break
            why.append(reason)
        else:
            if rule.step > facts.step:
                return UNDECIDED  # its known conditions match: wait for the rest
            return Match(rule, tuple(why))
    return None


def refuses_at_data(ruleset: Sequence[Rule]) -> bool:
    """Can a reject rule be decided only at the end of DATA? (It needs DATA's
    data, or comes after a rule that does.) Then the DATA reply waits for it."""
    data_before = False
    for rule in ruleset:
        data_before = data_before or rule.step == DATA
        if rule.action == "reject" and data_before:
            return True
    return False


def needs_headers(ruleset: Sequence[Rule]) -> bool:
    return any(rule.header_regex is not None for rule in ruleset)


def describe(match: Match) -> str:
    rule = match.rule
    return f"rule {rule.id} ({rule.action}): " + "; ".join(match.why)


def finding(match: Match, junk: bool) -> Finding:
    """The finding a matched rule leaves on the message."""
    rule = match.rule
    facts = {"id": rule.id, "action": rule.action, "why": list(match.why)}
    if rule.note:
        facts["note"] = rule.note
    return Finding("rule", junk, f"rule {rule.id} ({rule.action})" if junk else "", facts)


def header_fields(raw: bytes, limit: int = 256 * 1024) -> list[tuple[str, str]]:
    """(lower-case name, unfolded value) of the header block of `raw` (bounded)."""
    ends = [e for e in (raw.find(b"\r\n\r\n", 0, limit), raw.find(b"\n\n", 0, limit)) if e >= 0]
    block = raw[: min(ends) if ends else limit].decode("utf-8", "replace")
    fields: list[tuple[str, str]] = []
    for line in block.replace("\r\n", "\n").split("\n"):
        if line[:1] in (" ", "\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + " " + line.strip())
        elif ":" in line:
            name, _, value = line.partition(":")
            fields.append((name.strip().lower(), value.strip()))
    return fields
