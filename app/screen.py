"""The checks made at the end of DATA, inside the prepare stage: the rules
on headers and body, the content checks, and the spam scanner.

`Screen.begin(envelope)` starts the scanner (it needs only the raw bytes)
while the message is parsed; `finish(parsed)` then judges the rules and the
content (in a thread for messages over INLINE_LIMIT, like the parse; the
inputs are bounded and the regexes RE2), waits for the scanner (bounded by
SPAM_TIMEOUT), and returns the findings and, from an enforcing check, the
reply that refuses the message. Nothing here raises: a check that fails is
logged and its verdict is missing or `unchecked`; the message is stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from . import content, metrics, replies, rules
from .model import Envelope, Finding, ParsedMail
from .policy import Lists
from .scanner import Scanner
from .verdicts import ENFORCE, OFF

log = logging.getLogger("app.screen")

# Bytes of message judged on the event loop (as prepare.py parses them there:
# judging costs a tenth of parsing); larger ones in a thread.
INLINE_LIMIT = 1024 * 1024
Judged = tuple[list[Finding], str | None]


class Screen:
    def __init__(
        self,
        lists: Callable[[], Lists],
        rules_mode: str,
        content_mode: str,
        scanner: Scanner | None,
    ) -> None:
        self._lists = lists
        self._rules_mode = rules_mode
        self._content_mode = content_mode
        self.scanner = scanner

    def begin(self, envelope: Envelope) -> Screening:
        scan = None
        if self.scanner is not None:
            scan = asyncio.ensure_future(self.scanner.scan(envelope))
        return Screening(self, envelope, scan)

    def judge(self, envelope: Envelope, parsed: ParsedMail) -> Judged:
        """Rules and content checks of one message (pure CPU; never raises)."""
        findings: list[Finding] = []
        refusal = None
        try:
            ruleset = self._lists().rules if self._rules_mode != OFF else ()
            if ruleset:
                refusal = self._judge_rules(ruleset, envelope, parsed, findings)
            if self._content_mode != OFF:
                found, refused = content.judge(parsed, self._content_mode)
                findings += [found] if found else []
                if refused and refusal is None:
                    refusal = replies.DANGEROUS_CONTENT.format(reason=refused)
        except Exception:
            log.exception("[screen] checking %s failed: stored without that verdict", envelope.id)
        return findings, refusal

    def _judge_rules(
        self,
        ruleset: tuple[rules.Rule, ...],
        envelope: Envelope,
        parsed: ParsedMail,
        findings: list[Finding],
    ) -> str | None:
        raw = envelope.as_received
        facts = rules.Facts(
            client=envelope.remote_ip,
            sender=envelope.mail_from,
            recipients=envelope.recipients,
            headers=rules.header_fields(raw) if rules.needs_headers(ruleset) else (),
            subject=parsed.subject,
            size=len(raw),
            has_attachments=bool(parsed.attachments),
            step=rules.DATA,
        )
        match = rules.evaluate(ruleset, facts)
        if not isinstance(match, rules.Match):
            return None
        action = match.rule.action
        findings.append(rules.finding(match, junk=action in ("junk", "reject")))
        if action == "reject" and self._rules_mode == ENFORCE:
            return match.rule.reply
        return None


class Screening:
    """The DATA-time checks of one message, begun while it is parsed."""

    def __init__(self, screen: Screen, envelope: Envelope, scan: asyncio.Future[Any] | None):
        self._screen = screen
        self._envelope = envelope
        self._scan = scan

    async def finish(self, parsed: ParsedMail) -> tuple[tuple[Finding, ...], str | None]:
        """(findings, refusal): the refusal is a reply, or None to store the message."""
        envelope = self._envelope
        if len(envelope.raw) > INLINE_LIMIT:
            findings, refusal = await asyncio.to_thread(self._screen.judge, envelope, parsed)
        else:
            findings, refusal = self._screen.judge(envelope, parsed)
        if self._scan is not None:
            found, refused = await self._scan
            findings.append(found)
            refusal = refusal or refused
        for finding in (*envelope.findings, *findings):
            if finding.junk:
                metrics.JUNK.labels(finding.check).inc()
        return tuple(findings), refusal

    def cancel(self) -> None:
        if self._scan is not None:
            self._scan.cancel()
