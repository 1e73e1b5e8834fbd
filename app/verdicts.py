"""Verdicts: what each defence check's mode means, and the one builder of
the `emails.verdicts` object that the API, the page and webhooks read.

Every check (reputation at connect, rate limits, rules, content, the spam
scanner) runs in one of three modes, set per check:

- `off`: not run;
- `record`: run; what it found is stored in `verdicts`, and what it would
  refuse marks the message junk instead (stored, shown apart, never lost);
- `enforce`: what it would refuse is refused, with an RFC-valid reply.

The stored object (NULL when no check found anything):

    {"junk": true,
     "reasons": ["dnsbl: listed by bl.example (score 2 >= 1)", ...],
     "dnsbl": {...}, "rate": {...}, "rule": {...}, "content": {...},
     "scanner": {...}}

`reasons` are the junk reasons, one line each; each check's facts are under
its own key (the `data` of its Finding). Pure: no I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from .model import Finding, Prepared

OFF, RECORD, ENFORCE = "off", "record", "enforce"
MODES = (OFF, RECORD, ENFORCE)
CHECKS = ("dnsbl", "rate", "rule", "content", "scanner")


def build(findings: Iterable[Finding]) -> dict[str, Any] | None:
    """The `verdicts` object of a message with these findings (None: nothing found)."""
    found = [f for f in findings if f.check in CHECKS]
    if not found:
        return None
    verdicts: dict[str, Any] = {
        "junk": any(f.junk for f in found),
        "reasons": [f"{f.check}: {f.reason}" for f in found if f.junk],
    }
    for finding in found:
        # One finding per check; a later one (the end of DATA) adds to an earlier.
        verdicts[finding.check] = {**verdicts.get(finding.check, {}), **finding.data}
    return storable(verdicts)


def storable(value: Any) -> Any:
    """`value` as PostgreSQL's jsonb takes it: NaN and infinities null, strings
    without NUL or lone surrogates (a scanner's answer is not ours to trust)."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {storable(str(key)): storable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(item) for item in value]
    return value


def of(prepared: Prepared) -> dict[str, Any] | None:
    """The `verdicts` object of a prepared message (SMTP dialogue and DATA findings)."""
    if not prepared.findings and not prepared.envelope.findings:
        return None
    return build((*prepared.envelope.findings, *prepared.findings))


def stored(prepared: Prepared) -> str | None:
    """`verdicts` as the JSON text the writer stores."""
    verdicts = of(prepared)
    return None if verdicts is None else json.dumps(verdicts, ensure_ascii=False)


def is_junk(prepared: Prepared) -> bool:
    return any(f.junk for f in (*prepared.envelope.findings, *prepared.findings))


def act(mode: str, check: str, refusal: str, reason: str, data: dict[str, Any]) -> Verdict:
    """What a check that found something refusable does in `mode`: refuse
    (enforce) or record it as junk (record)."""
    if mode == ENFORCE:
        return Verdict(refusal, Finding(check, True, reason, data))
    return Verdict(None, Finding(check, True, reason, data))


class Verdict:
    """A check's outcome: the reply refusing the message (enforce), and the finding."""

    __slots__ = ("refusal", "finding")

    def __init__(self, refusal: str | None, finding: Finding | None) -> None:
        self.refusal = refusal
        self.finding = finding
