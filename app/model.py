"""Frozen records passed between the stages of the flow. Imports nothing of ours."""

from __future__ import annotations

import dataclasses
import datetime
import os
import uuid
from collections.abc import Mapping
from typing import Any

NO_SUBJECT = "No Subject"


@dataclasses.dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    size: int
    # Its first decoded bytes (a zip archive: all of it), for the content
    # checks (app/content.py); not stored.
    head: bytes = dataclasses.field(default=b"", repr=False)


@dataclasses.dataclass(frozen=True)
class ParsedMail:
    """What the website shows of a message; every text is clean UTF-8 without NUL.

    Empty values follow what the Cybertemp writer stored: `html` is "" when
    there is no HTML part, and a message without a Subject header gets
    NO_SUBJECT (an empty Subject header stays empty).
    """

    subject: str
    body: str
    html: str
    header_from: str  # the From header: "Name <address>" or "address"
    header_to: tuple[str, ...]  # the To and Cc headers, each like header_from
    message_id: str | None
    attachments: tuple[Attachment, ...]
    parser: str  # "mail-parser", "email" (fallback) or "none" (unparseable)
    # What app/codes.py extracts from subject, text and HTML at parse time
    # (README "Codes and links"): one-time codes as shown, the verification link.
    codes: tuple[str, ...] = ()
    verify_link: str | None = None


@dataclasses.dataclass(frozen=True)
class AuthResult:
    """The sender-authentication verdicts of one message (RFC 8601 words)."""

    spf: str
    dkim: str
    dmarc: str
    dmarc_domain: str | None  # the header From domain DMARC evaluated
    dmarc_policy: str | None  # the policy applied (after pct): none, quarantine, reject
    header: str  # Authentication-Results: <authserv-id>; ...

    @property
    def dmarc_reject(self) -> bool:
        """DMARC failed and the policy applied is reject (what enforce refuses)."""
        return self.dmarc == "fail" and self.dmarc_policy == "reject"


@dataclasses.dataclass(frozen=True)
class Finding:
    """What one defence check found about a message (app/verdicts.py builds
    the stored `verdicts` object from these)."""

    check: str  # "dnsbl", "rate", "rule", "content" or "scanner"
    junk: bool  # marks the message junk
    reason: str  # one line for people: why it is junk, or what was seen
    data: Mapping[str, Any]  # the facts, stored as verdicts[check] (JSON values)


@dataclasses.dataclass(frozen=True)
class Envelope:
    """One accepted DATA: what the SMTP session knows, plus the raw bytes.

    `id` is made before the message is queued, so a retried or replayed
    write is idempotent (the database skips ids it already has).
    """

    id: uuid.UUID
    received_at: datetime.datetime
    mail_from: str  # "" for the null sender <>
    recipients: tuple[str, ...]
    raw: bytes
    remote_ip: str | None
    helo: str | None
    # One fresh uuid per recipient row, also made up front for idempotence.
    row_ids: tuple[uuid.UUID, ...]
    tls: bool = False  # received over STARTTLS
    # Bytes of our own trace fields at the start of `raw`: parsing skips them
    # (mail-parser's Received parsing would cost a quarter of the parse).
    trace_length: int = 0
    # SPF/DKIM/DMARC outcome when already known (a spooled message keeps the
    # verdict it got on receipt); None: to be checked.
    auth: AuthResult | None = None
    # What the checks of the SMTP dialogue found (DNSBL at connect, rate
    # limits and rules at MAIL and RCPT), kept with the message.
    findings: tuple[Finding, ...] = ()

    @property
    def as_received(self) -> bytes:
        return self.raw[self.trace_length :] if self.trace_length else self.raw

    @staticmethod
    def make_ids(count: int) -> list[uuid.UUID]:
        """`count` random (version 4) uuids from one system call."""
        data = os.urandom(16 * count)
        return [uuid.UUID(bytes=data[i : i + 16], version=4) for i in range(0, len(data), 16)]

    @classmethod
    def new(
        cls,
        mail_from: str,
        recipients: tuple[str, ...],
        raw: bytes,
        remote_ip: str | None,
        helo: str | None,
        tls: bool = False,
        findings: tuple[Finding, ...] = (),
    ) -> Envelope:
        ids = cls.make_ids(1 + len(recipients))
        return cls(
            id=ids[0],
            received_at=datetime.datetime.now(datetime.UTC),
            mail_from=mail_from,
            recipients=recipients,
            raw=raw,
            remote_ip=remote_ip,
            helo=helo,
            row_ids=tuple(ids[1:]),
            tls=tls,
            findings=findings,
        )


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A message ready for its rows: the envelope, its fields and its verdicts."""

    envelope: Envelope
    parsed: ParsedMail
    auth: AuthResult | None  # None with AUTH_CHECKS=off
    # What the checks at the end of DATA found (content, rules on headers
    # and body, the spam scanner); with the envelope's, they make `verdicts`.
    findings: tuple[Finding, ...] = ()
    # The reply refusing the message, when an enforcing check says so.
    refusal: str | None = None
