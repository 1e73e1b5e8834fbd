"""SMTP stage: the handler. Translates verbs, nothing else.

`Handler` answers each verb (aiosmtpd's hooks) with a policy verdict and
hands accepted mail to the prepare stage and the writer; the replies are
replies.py's. The protocol itself is `session.Session`, the one subclass of
aiosmtpd's SMTP; `session_factory` makes its sessions for the listener.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import email.utils
import logging
import re
import ssl
import time
from collections.abc import Callable
from typing import Any

from aiosmtpd.proxy_protocol import ProxyData
from aiosmtpd.smtp import Envelope as SMTPEnvelope
from aiosmtpd.smtp import Session as SMTPSession

from . import metrics, pause, replies, rules
from .config import Settings
from .connections import Connections
from .db_dedup import Confirmation
from .model import Envelope, Finding, Prepared
from .policy import (
    Lists,
    Verdict,
    address_problem,
    bad_characters,
    check_recipient,
    check_sender,
    normalize_address,
    normalize_domain,
)
from .prepare import Preparer
from .ratelimit import RateLimits
from .reputation import Reputation
from .reputation import finding as reputation_finding
from .session import Session
from .store import BatchWriter, QueueFull, StoreFull
from .verdicts import ENFORCE, OFF

log = logging.getLogger("app.smtp")
# aiosmtpd logs every command at INFO and every limit hit at WARNING
# ("mail.log"): a flood would fill the disk. Our RefusalLog is rate-limited.
logging.getLogger("mail.log").setLevel(logging.ERROR)

PROXY_TIMEOUT = 10.0  # seconds to wait for the PROXY header
BACKPRESSURE_WAIT = 5.0  # seconds a DATA reply may wait for room in a crowded queue
UNLIMITED = 1 << 40  # a command budget no session reaches
NULL_SENDER = "<>"  # kept as aiosmtpd's envelope.mail_from: it must be truthy

VERDICT_REPLIES = {
    Verdict.NOT_LOADED: replies.LISTS_NOT_LOADED,
    Verdict.DOMAIN_NOT_ALLOWED: replies.DOMAIN_NOT_ALLOWED,
    Verdict.SENDER_BANNED: replies.SENDER_BANNED,
    Verdict.DOMAIN_BANNED: replies.DOMAIN_BANNED,
}
SIZE_PARAMETER = re.compile(r"SIZE=(\d{1,15})\Z", re.I)


def _printable(text: str) -> str:
    return "".join(c if 33 <= ord(c) <= 126 else "?" for c in text[:255])


def received_header(
    helo: str | None,
    ip: str | None,
    hostname: str,
    message_id: str,
    tls: bool,
    when: datetime.datetime,
) -> bytes:
    """Our one-line trace field (RFC 5321 4.4), prepended to the stored message."""
    address = f"IPv6:{ip}" if ip and ":" in ip else (ip or "unknown")
    protocol = "ESMTPS" if tls else "ESMTP"  # RFC 3848
    return (
        f"Received: from {_printable(helo or 'unknown')} ([{address}]) by {hostname} "
        f"with {protocol} id {message_id}; {email.utils.format_datetime(when)}\r\n"
    ).encode()


class Handler:
    """aiosmtpd hooks: each verb is answered from policy, limits and the writer."""

    def __init__(
        self,
        settings: Settings,
        lists: Callable[[], Lists],
        preparer: Preparer,
        writer: BatchWriter,
        reputation: Reputation | None = None,
        rate_limits: RateLimits | None = None,
    ) -> None:
        self._settings = settings
        self._lists = lists
        self._preparer = preparer
        self._writer = writer
        self._reputation = reputation
        self._rate_limits = rate_limits
        self._rules = settings.rules_checks
        # Only enforcing checks of the end of DATA make the reply wait for
        # them; for the rules, only while a reject rule can be decided there.
        self._enforce = settings.auth_checks == ENFORCE
        self._wait_for_verdicts = self._enforce or ENFORCE in (
            settings.content_checks,
            settings.spam_checks if settings.spam_scanner else OFF,
        )
        self._rules_seen: tuple[tuple[rules.Rule, ...], bool] = ((), False)
        self._postmaster = f"postmaster@{normalize_domain(settings.smtp_hostname) or 'localhost'}"

    async def handle_PROXY(
        self, server: Session, session: SMTPSession, envelope: SMTPEnvelope, proxy: ProxyData
    ) -> bool:
        # aiosmtpd closes the connection when the header is missing or invalid,
        # or when the client so named is refused (paused, blocked for errors).
        return (
            bool(proxy.valid)
            and server.accept_proxy(proxy)
            and not await server.refused_at_greeting()
        )

    async def handle_HELO(
        self, server: Session, session: SMTPSession, envelope: SMTPEnvelope, hostname: str
    ) -> str:
        if bad_characters(hostname):
            return replies.BAD_HELO.format(verb="HELO")
        session.host_name = hostname
        return f"250 {self._settings.smtp_hostname}"

    async def handle_EHLO(
        self,
        server: Session,
        session: SMTPSession,
        envelope: SMTPEnvelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        if bad_characters(hostname):  # NUL or invalid UTF-8 would never store
            return [replies.BAD_HELO.format(verb="EHLO")]
        session.host_name = hostname
        # aiosmtpd does not advertise these; it processes pipelined input in order.
        last = responses.pop()  # "250 HELP"
        responses = [line for line in responses if not line.startswith("250-AUTH")]
        responses += ["250-PIPELINING", "250-ENHANCEDSTATUSCODES", last]
        return responses

    async def handle_MAIL(
        self,
        server: Session,
        session: SMTPSession,
        envelope: SMTPEnvelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        sender = "" if address == NULL_SENDER else address
        problem = sender and address_problem(sender)
        if problem:
            return replies.ADDRESS_TOO_LONG if problem == "too long" else replies.BAD_SENDER_SYNTAX
        lists = self._lists()
        if lists.paused is not None:  # 421: the session closes (Session.push)
            return pause.reply(lists.paused)
        verdict = check_sender(lists, sender)
        if verdict is not Verdict.OK:
            server.note_refusal(verdict.value, sender.rpartition("@")[2] or NULL_SENDER)
            return VERDICT_REPLIES[verdict]
        refusal = self._rule_refusal(server, sender)
        if refusal is not None:
            return refusal
        declared = next((m for m in map(SIZE_PARAMETER.match, mail_options) if m), None)
        if declared and not server.hold(int(declared.group(1)), declared=True):
            return replies.BUSY_RECEIVING
        if self._rate_limits is not None:
            refusal, found = await self._rate_limits.at_mail(server.peer_ip, sender)
            if refusal is not None:
                server.note_refusal("rate limit at MAIL", sender.rpartition("@")[2] or NULL_SENDER)
                return refusal
            server.findings += [found] if found else []
        # The null sender is kept as "<>": aiosmtpd reads an empty sender as
        # "no MAIL yet" and would refuse RCPT (and allow a second MAIL).
        envelope.mail_from = address if sender else NULL_SENDER
        envelope.mail_options.extend(mail_options)
        return replies.SENDER_OK

    async def handle_RCPT(
        self,
        server: Session,
        session: SMTPSession,
        envelope: SMTPEnvelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= self._settings.max_recipients:
            return replies.TOO_MANY_RECIPIENTS
        if address.lower() == "postmaster":
            # RFC 5321 4.5.1: <postmaster> without a domain MUST be accepted.
            recipient = self._postmaster
        else:
            problem = address_problem(address)
            if problem:
                if problem == "too long":
                    return replies.ADDRESS_TOO_LONG
                return replies.BAD_RECIPIENT_SYNTAX
            verdict = check_recipient(self._lists(), address)
            if verdict is not Verdict.OK:
                server.note_refusal(verdict.value, address.rpartition("@")[2].lower()[:255])
                return VERDICT_REPLIES[verdict]
            recipient = normalize_address(address)
        if recipient in envelope.rcpt_tos:  # one copy per mailbox
            return replies.RECIPIENT_OK
        refusal = await self._screen_recipient(server, envelope, recipient)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(recipient)
        return replies.RECIPIENT_OK

    # Inbound defence ---------------------------------------------------------

    def client_connected(self, server: Session) -> None:
        """The client's address is known: its reputation lookups start now."""
        if self._reputation is not None:
            server.reputation = self._reputation.start(server.peer_ip)

    async def greeting_refusal(self, server: Session) -> tuple[str, str] | None:
        """(reply, reason) refusing a new connection: receiving is paused, or
        the client is blocked for too many errors."""
        paused = self._lists().paused
        if paused is not None:
            return pause.reply(paused), "paused"
        if self._rate_limits is not None and await self._rate_limits.blocked(server.peer_ip):
            return replies.ERRORS_BLOCKED, "blocked for errors"
        return None

    async def failed_command(self, server: Session) -> bool:
        """Count a failed command; True if the client is now blocked."""
        limits = self._rate_limits
        return limits is not None and await limits.failed_command(server.peer_ip)

    def _rule_refusal(
        self, server: Session, sender: str, recipient: str | None = None
    ) -> str | None:
        """A reject rule decided by the client, sender (and recipient): its reply.
        Other actions, and record mode, are applied at the end of DATA."""
        ruleset = self._lists().rules if self._rules == ENFORCE else ()
        if not ruleset:
            return None
        step = rules.RCPT if recipient else rules.MAIL
        facts = rules.Facts(
            client=server.peer_ip,
            sender=sender,
            recipients=(recipient,) if recipient else None,
            step=step,
        )
        match = rules.evaluate(ruleset, facts)
        if not isinstance(match, rules.Match) or match.rule.action != "reject":
            return None
        detail = recipient or sender.rpartition("@")[2] or NULL_SENDER  # as bans: the domain
        server.note_refusal(f"rule {match.rule.id}", detail)
        return match.rule.reply

    async def _screen_recipient(
        self, server: Session, envelope: SMTPEnvelope, recipient: str
    ) -> str | None:
        """The refusal of an otherwise accepted recipient: DNSBL (enforce), a
        rule, the rate limits (counted only for recipients that pass the rest)."""
        if server.reputation is not None and self._reputation is not None:
            result = await server.reputation  # done by DNSBL_TIMEOUT after the connect
            listed = result.score >= self._reputation.threshold
            if listed and self._settings.dnsbl_checks == ENFORCE:
                server.note_refusal("dnsbl", recipient)
                zones = ", ".join(result.blocklists())
                return replies.DNSBL_LISTED.format(ip=server.peer_ip, zones=zones)
        sender = "" if envelope.mail_from == NULL_SENDER else envelope.mail_from or ""
        refusal = self._rule_refusal(server, sender, recipient)
        if refusal is None and self._rate_limits is not None:
            refusal, found = await self._rate_limits.at_rcpt(recipient)
            if refusal is not None:
                server.note_refusal("rate limit at RCPT", recipient)
            server.findings += [found] if found else []
        return refusal

    def _rules_refuse_at_data(self) -> bool:
        """True while an enforced reject rule can be decided at the end of DATA."""
        if self._rules != ENFORCE:
            return False
        ruleset = self._lists().rules
        if ruleset is not self._rules_seen[0]:  # a new snapshot: judge it once
            self._rules_seen = (ruleset, rules.refuses_at_data(ruleset))
        return self._rules_seen[1]

    def _refusal_of(self, server: Session, done: Prepared) -> str | None:
        """The reply refusing a prepared message: DMARC reject, or an enforcing check."""
        auth = done.auth
        if self._enforce and auth is not None and auth.dmarc_reject:
            server.note_refusal("550 dmarc reject", auth.dmarc_domain or "")
            return replies.DMARC_REJECT.format(domain=auth.dmarc_domain)
        if done.refusal is not None:
            server.note_refusal(f"{done.refusal[:9]} at end of DATA")
        return done.refusal

    def _session_findings(self, server: Session) -> tuple[Finding, ...]:
        """What the dialogue found: rate limits (record), the client's reputation."""
        findings = list(server.findings)
        task = server.reputation
        if task is not None and task.done() and not task.cancelled() and self._reputation:
            found = reputation_finding(task.result(), self._reputation.threshold)
            findings += [found] if found else []
        return tuple(findings)

    async def handle_DATA(
        self, server: Session, session: SMTPSession, envelope: SMTPEnvelope
    ) -> str:
        content = envelope.original_content
        assert isinstance(content, bytearray) and envelope.mail_from is not None
        started = time.perf_counter()
        message = Envelope.new(
            mail_from="" if envelope.mail_from == NULL_SENDER else envelope.mail_from,
            recipients=tuple(envelope.rcpt_tos),
            raw=b"",
            remote_ip=server.peer_ip or None,
            helo=session.host_name,
            tls=session.ssl is not None,
            findings=self._session_findings(server),
        )
        trace = received_header(
            message.helo,
            message.remote_ip,
            self._settings.smtp_hostname,
            str(message.id),
            message.tls,
            message.received_at,
        )
        content[:0] = trace
        message = dataclasses.replace(message, raw=bytes(content), trace_length=len(trace))
        del content[:]
        prepared = self._preparer.start(message)
        if self._wait_for_verdicts or self._rules_refuse_at_data():
            refusal = self._refusal_of(server, await prepared)  # AUTH_ and SPAM_TIMEOUT bound it
            if refusal is not None:
                return refusal
        await self._writer.wait_for_room(BACKPRESSURE_WAIT)
        try:
            committed = self._writer.submit(message, prepared, wait=self._settings.durable)
        except QueueFull as why:
            prepared.cancel()
            reply = replies.STORE_FULL if isinstance(why, StoreFull) else replies.QUEUE_FULL
            server.note_refusal(f"{reply[:3]} {why}")
            return reply
        if committed is not None:
            try:
                await asyncio.wait_for(committed, self._settings.durable_timeout)
            except TimeoutError:
                # wait_for cancelled the future: the writer drops the message,
                # or revokes it if its write went through after all.
                log.warning("[smtp] commit wait timed out for %s", message.id)
                return replies.STORE_FULL if self._writer.store_full else replies.QUEUE_FULL
        if self._rate_limits is not None:  # checked at MAIL and RCPT, counted now
            await self._rate_limits.delivered(server.peer_ip, message.mail_from, message.recipients)
        metrics.ACCEPTED.inc()
        metrics.ACK_SECONDS.observe(time.perf_counter() - started)
        log.info(
            "[smtp] accepted id=%s rcpts=%d size=%d from=%s",
            message.id,
            len(message.recipients),
            len(message.raw),
            server.peer_ip,
        )
        server.answered = self._writer.confirmations.of(message)
        return replies.QUEUED.format(id=message.id)

    def confirmed(self, confirmation: Confirmation) -> None:
        """The client went on after a 250 to DATA: it saw it (app/db_dedup.py)."""
        self._writer.confirm(confirmation)

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd would answer "500 Error: (Class) text": permanent, and it leaks internals.
        log.exception("[smtp] unexpected error in a session")
        return replies.INTERNAL_ERROR


def session_factory(
    settings: Settings,
    handler: Handler,
    connections: Connections,
    tls_context: Callable[[], ssl.SSLContext | None] = lambda: None,
) -> Callable[[], Session]:
    """Sessions for loop.create_server; each new one gets the current TLS context."""
    return Session.factory(
        handler, connections, settings, tls_context, **session_options(settings, tls_context())
    )


def session_options(settings: Settings, tls_context: ssl.SSLContext | None) -> dict[str, Any]:
    """aiosmtpd's SMTP options for our sessions."""
    # 0: no limit (Postfix has none; its clients reuse connections for 300 s).
    # SESSION_TIMEOUT still bounds how long one connection lasts.
    messages = settings.max_messages_per_connection or UNLIMITED
    # Per-connection budgets: past one, aiosmtpd answers 421 and closes.
    call_limits = {
        "MAIL": messages,
        "DATA": messages,
        "RCPT": messages * min(settings.max_recipients, 100) + settings.max_errors,
        "RSET": messages + 10,
        "NOOP": 20,
        "EHLO": 5,
        "HELO": 5,
        "HELP": 5,
        "VRFY": 5,
        "EXPN": 5,
        "STARTTLS": 2,
        "*": 50,
    }
    return {
        "command_call_limit": call_limits,
        "data_size_limit": settings.max_message_size,
        "enable_SMTPUTF8": True,
        "hostname": settings.smtp_hostname,
        "ident": "ESMTP",
        "timeout": settings.smtp_timeout,
        "tls_context": tls_context,
        "proxy_protocol_timeout": PROXY_TIMEOUT if settings.proxy_protocol else None,
        # A receive-only MX authenticates nobody: no AUTH mechanism at all.
        "auth_exclude_mechanism": ["LOGIN", "PLAIN"],
    }
