"""SMTP stage: aiosmtpd protocol and handler. Translates verbs, nothing else.

`Session` (an aiosmtpd.smtp.SMTP subclass, one per connection) owns what
aiosmtpd gets wrong for port 25: DATA is read in chunks and ends only at
CRLF.CRLF (long lines kept intact, memory bounded by the size limit, no
smuggling), connection limits, and our reply texts. `Handler` answers the
verbs with policy verdicts and hands accepted mail to the writer.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime
import email.utils
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiosmtpd.proxy_protocol import V2_CMD, ProxyData
from aiosmtpd.smtp import SMTP
from aiosmtpd.smtp import Envelope as SMTPEnvelope
from aiosmtpd.smtp import Session as SMTPSession

from . import metrics, replies
from .config import Settings
from .model import Envelope
from .policy import (
    Lists,
    Verdict,
    address_problem,
    check_recipient,
    check_sender,
    normalize_address,
)
from .store import BatchWriter, QueueFull

if TYPE_CHECKING:
    from .auth import AuthResult

log = logging.getLogger("app.smtp")
# aiosmtpd logs every command at INFO and every limit hit at WARNING
# ("mail.log"): a flood would fill the disk. Our RefusalLog is rate-limited.
logging.getLogger("mail.log").setLevel(logging.ERROR)

CHUNK = 64 * 1024
PROXY_TIMEOUT = 10.0  # seconds to wait for the PROXY header
BACKPRESSURE_WAIT = 5.0  # seconds a DATA reply may wait for room in a crowded queue
TERMINATOR = b"\r\n.\r\n"
# RFC 5321 4.5.3.1.4: a command line is at most 512 octets; DESIGN.md allows
# up to 1000 (some clients send long MAIL parameters), CRLF excluded.
COMMAND_LINE_MAX = 998
UNLIMITED = 1 << 40  # a command budget no session reaches

VERDICT_REPLIES = {
    Verdict.NOT_LOADED: replies.LISTS_NOT_LOADED,
    Verdict.DOMAIN_NOT_ALLOWED: replies.DOMAIN_NOT_ALLOWED,
    Verdict.SENDER_BANNED: replies.SENDER_BANNED,
    Verdict.DOMAIN_BANNED: replies.DOMAIN_BANNED,
}

# aiosmtpd's own texts for limits we also hold, reworded to DESIGN.md's.
AIOSMTPD_REPLIES = {
    b"500 Command line too long": replies.LINE_TOO_LONG.encode(),
    b"552 Error: message size exceeds fixed maximum message size": replies.MESSAGE_TOO_BIG.encode(),
    b"553 5.1.3 Error: malformed address": replies.BAD_ADDRESS_SYNTAX.encode(),
    b"502 5.5.1 Too many unrecognized commands, goodbye.": replies.TOO_MANY_UNKNOWN.encode(),
}


# RFC 2034: with ENHANCEDSTATUSCODES every error reply carries one. aiosmtpd's
# own error texts do not: add the usual code for the reply code.
ENHANCED = re.compile(rb"^\d{3}[ -]\d\.\d{1,3}\.\d{1,3}( |$)")
DEFAULT_ENHANCED = {
    b"421": b"4.3.0",
    b"451": b"4.3.0",
    b"452": b"4.3.1",
    b"454": b"4.7.0",
    b"500": b"5.5.2",
    b"501": b"5.5.4",
    b"502": b"5.5.1",
    b"503": b"5.5.1",
    b"504": b"5.5.4",
    b"530": b"5.7.0",
    b"550": b"5.0.0",
    b"552": b"5.3.4",
    b"553": b"5.1.3",
    b"554": b"5.0.0",
    b"555": b"5.5.4",
}


def with_enhanced_code(status: bytes) -> bytes:
    if status[:1] not in (b"4", b"5") or ENHANCED.match(status):
        return status
    code = status[:3]
    default = DEFAULT_ENHANCED.get(code, code[:1] + b".0.0")
    return (
        code + status[3:4] + default + b" " + status[4:]
        if len(status) > 4
        else (code + b" " + default)
    )


# The common path `<local@domain>` in a plain form: no need for aiosmtpd's
# RFC 5322 tokenizer, which also defines a class on every call (about 15% of
# a busy worker's CPU). Anything else takes aiosmtpd's own parser.
PLAIN_PATH = re.compile(
    r"\s*<([^\s<>()\[\]\\,;:\"@.][^\s<>()\[\]\\,;:\"@]*@"
    r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)>(.*)\Z",
    re.S,
)


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


class RefusalLog:
    """One line per refused or cut session, at most `per_minute` a minute.

    A flood cannot fill the disk: past the budget lines are only counted,
    and the count is logged when the minute is over.
    """

    def __init__(self, per_minute: int = 60) -> None:
        self.per_minute = per_minute
        self._window_start = time.monotonic()
        self._logged = 0
        self.suppressed = 0
        self.total = 0

    def note(self, ip: str, reason: str) -> None:
        metrics.REFUSED.labels(reason).inc()
        self.total += 1
        now = time.monotonic()
        if now - self._window_start >= 60:
            if self.suppressed:
                log.warning("[smtp] %d more refused sessions were not logged", self.suppressed)
            self._window_start, self._logged, self.suppressed = now, 0, 0
        if self._logged < self.per_minute:
            self._logged += 1
            log.warning("[smtp] refused %s: %s", ip or "?", reason)
        else:
            self.suppressed += 1


class Connections:
    """Live sessions of this worker, with the total and per-address limits."""

    def __init__(self, max_total: int, max_per_ip: int) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.sessions: set[Session] = set()
        # Keys are only addresses with a live session: bounded by max_total.
        self.per_ip: collections.Counter[str] = collections.Counter()
        self.closing = False
        self.refusals = RefusalLog()
        self.all_closed = asyncio.Event()  # set once closing and no session is left

    def admit(self, session: Session) -> str | None:
        """Register `session` (total limit); the refusal reply if it is reached."""
        if self.closing:
            return replies.SHUTTING_DOWN
        if len(self.sessions) >= self.max_total:
            return replies.TOO_MANY_CONNECTIONS
        self.sessions.add(session)
        return None

    def count_address(self, ip: str) -> str | None:
        """Count one more session from `ip` (per-address limit); the refusal if over.

        Called at connect, or after the PROXY header when the real client
        address is behind a load balancer.
        """
        if self.per_ip[ip] >= self.max_per_ip:
            return replies.TOO_MANY_FROM_IP
        self.per_ip[ip] += 1
        return None

    def release(self, session: Session, counted_ip: str | None) -> None:
        self.sessions.discard(session)
        if counted_ip is not None:
            self.per_ip[counted_ip] -= 1
            if self.per_ip[counted_ip] <= 0:
                del self.per_ip[counted_ip]
        if self.closing and not self.sessions:
            self.all_closed.set()

    def close_idle(self) -> None:
        """Shutdown: say 421 to every session not inside a transaction, and close it."""
        self.closing = True
        if not self.sessions:
            self.all_closed.set()
        for session in list(self.sessions):
            if not session.in_transaction:
                session.say_goodbye()


class Session(SMTP):
    """One SMTP connection."""

    def __init__(
        self, handler: Handler, connections: Connections, settings: Settings, **kwargs: Any
    ) -> None:
        super().__init__(handler, **kwargs)
        # aiosmtpd keeps this dict on the class, shared by all sessions.
        self.command_size_limits = collections.defaultdict(lambda: COMMAND_LINE_MAX)
        self.command_size_limit = COMMAND_LINE_MAX
        self._connections = connections
        self._settings = settings
        self._refusal: str | None = None
        self._ip = ""
        self._counted_ip: str | None = None  # the key this session holds in per_ip
        self._errors = 0
        self._deadline: asyncio.TimerHandle | None = None

    @property
    def in_transaction(self) -> bool:
        return bool(self.envelope is not None and self.envelope.mail_from is not None)

    @property
    def peer_ip(self) -> str:
        return self._ip

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None
        super().connection_made(transport)
        if first:  # not the STARTTLS upgrade of the same connection
            metrics.CONNECTIONS.inc()
            peer = transport.get_extra_info("peername")
            self._ip = str(peer[0]) if peer else ""
            self._refusal = self._connections.admit(self)
            if self._refusal is None and not self._settings.proxy_protocol:
                self._refusal = self._count_address(self._ip)
            self._deadline = self.loop.call_later(
                self._settings.session_timeout,
                self._close_with,
                replies.SESSION_TIMEOUT,
                "session time limit",
            )

    def connection_lost(self, error: Exception | None) -> None:
        self._connections.release(self, self._counted_ip)
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(error)

    def _count_address(self, ip: str) -> str | None:
        refusal = self._connections.count_address(ip)
        if refusal is None:
            self._counted_ip = ip
        return refusal

    def accept_proxy(self, proxy: ProxyData) -> bool:
        """PROXY header read: the client is the address it names (LOCAL: the balancer)."""
        if proxy.src_addr is not None and proxy.command is not V2_CMD.LOCAL:
            self._ip = str(proxy.src_addr)
        refusal = self._count_address(self._ip)
        if refusal is not None:
            self._close_with(refusal, refusal)
            return False
        return True

    def note_refusal(self, reason: str) -> None:
        self._connections.refusals.note(self._ip, reason)

    def _close_with(self, reply: str, reason: str | None) -> None:
        """Say `reply` (a 421) and close; log `reason` as a refusal unless None."""
        if reason is not None:
            self.note_refusal(reason)
        if self.transport is not None and not self.transport.is_closing():
            self._writer.write(reply.encode() + b"\r\n")
            self.transport.close()

    async def _handle_client(self) -> None:
        if self._refusal is not None:
            self._close_with(self._refusal, self._refusal)
            return
        await super()._handle_client()

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        match = PLAIN_PATH.match(arg) if arg else None
        if match is not None and ".." not in match.group(1):
            return match.group(1), match.group(2).lstrip()
        return super()._getaddr(arg)

    def say_goodbye(self) -> None:
        """Shutdown: 421 and close (not a refusal of this client)."""
        self._close_with(replies.SHUTTING_DOWN, None)

    async def push(self, status: Any) -> None:
        if isinstance(status, str):
            status = status.encode("utf-8")
        status = with_enhanced_code(AIOSMTPD_REPLIES.get(status, status))
        await super().push(status)
        if status[:1] == b"5":
            # Refused or malformed commands: a client that keeps failing is
            # probing or broken; do not let it spin the server.
            self._errors += 1
            if self._errors >= self._settings.max_errors:
                self._close_with(replies.TOO_MANY_ERRORS, "too many errors")

    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            async with asyncio.timeout(self._settings.data_timeout):
                content = await self._read_data()
        except TimeoutError:
            self._close_with(replies.DATA_TIMEOUT, "DATA time limit")
            return
        if content is None:
            self._set_post_data_state()
            await self.push(replies.MESSAGE_TOO_BIG)
            return
        self.envelope.content = self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status)
        if self._connections.closing:
            self.say_goodbye()

    async def _read_data(self) -> bytes | None:
        """The dot-unstuffed message, or None if it exceeded the size limit.

        Reads 64 KiB chunks and looks for CRLF.CRLF only (a bare LF or CR never
        ends DATA). A leading CRLF stands for the end of the DATA command line,
        so an empty message ('.' alone) ends the same way. Bytes after the
        terminator (pipelined commands) go back to the reader.
        """
        limit = self.data_size_limit or 0
        buffer = bytearray(b"\r\n")
        scan_from = 0
        oversize = False
        while True:
            chunk = await self._reader.read(CHUNK)
            if not chunk:  # peer closed: aiosmtpd cancels this task at EOF
                raise asyncio.CancelledError
            self._reset_timeout()  # SMTP_TIMEOUT counts idleness, also in DATA
            buffer += chunk
            end = buffer.find(TERMINATOR, scan_from)
            if end != -1:
                rest = buffer[end + len(TERMINATOR) :]
                if rest:
                    self._reader._buffer[:0] = rest  # type: ignore[attr-defined]
                if oversize or (limit and end > limit):  # `end` is the stuffed size
                    return None
                # Dot-unstuffing: a line's leading '.' is dropped (RFC 5321 4.5.2).
                # Copies are few: a big message costs a millisecond per copy.
                body = buffer[: end + 2]
                if b"\r\n." in body:
                    body = body.replace(b"\r\n.", b"\r\n")
                return bytes(memoryview(body)[2:])
            if limit and len(buffer) > limit + 2:
                # Too big: keep only a tail that may hold part of the terminator.
                oversize = True
                del buffer[: -len(TERMINATOR)]
            scan_from = max(0, len(buffer) - len(TERMINATOR) + 1)


class Handler:
    """aiosmtpd hooks: each verb is answered from policy, limits and the writer."""

    def __init__(
        self,
        settings: Settings,
        lists: Callable[[], Lists],
        writer: BatchWriter,
        authenticate: Callable[[Envelope], Awaitable[AuthResult]] | None = None,
    ) -> None:
        self._settings = settings
        self._lists = lists
        self._writer = writer
        # Only with AUTH_CHECKS=enforce do the checks run before the reply.
        self._enforce = authenticate if settings.auth_checks == "enforce" else None

    async def handle_PROXY(
        self, server: Session, session: SMTPSession, envelope: SMTPEnvelope, proxy: ProxyData
    ) -> bool:
        # aiosmtpd closes the connection when the header is missing or invalid.
        return bool(proxy.valid) and server.accept_proxy(proxy)

    async def handle_EHLO(
        self,
        server: Session,
        session: SMTPSession,
        envelope: SMTPEnvelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        # aiosmtpd does not advertise these; it processes pipelined input in order.
        last = responses.pop()  # "250 HELP"
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
        sender = "" if address == "<>" else address
        problem = sender and address_problem(sender)
        if problem:
            return replies.ADDRESS_TOO_LONG if problem == "too long" else replies.BAD_SENDER_SYNTAX
        verdict = check_sender(self._lists(), sender)
        if verdict is not Verdict.OK:
            metrics.REFUSED.labels(verdict.value).inc()
            log.info("[smtp] refused sender from %s: %s", server.peer_ip, verdict.value)
            return VERDICT_REPLIES[verdict]
        envelope.mail_from = sender
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

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
        problem = address_problem(address)
        if problem:
            return (
                replies.ADDRESS_TOO_LONG if problem == "too long" else replies.BAD_RECIPIENT_SYNTAX
            )
        verdict = check_recipient(self._lists(), address)
        if verdict is not Verdict.OK:
            metrics.REFUSED.labels(verdict.value).inc()
            return VERDICT_REPLIES[verdict]
        recipient = normalize_address(address)
        if recipient not in envelope.rcpt_tos:  # one copy per mailbox
            envelope.rcpt_tos.append(recipient)
        return "250 2.1.5 OK"

    async def handle_DATA(
        self, server: Session, session: SMTPSession, envelope: SMTPEnvelope
    ) -> str:
        assert envelope.original_content is not None and envelope.mail_from is not None
        started = time.perf_counter()
        message = Envelope.new(
            mail_from=envelope.mail_from,
            recipients=tuple(envelope.rcpt_tos),
            raw=envelope.original_content,
            remote_ip=server.peer_ip or None,
            helo=session.host_name,
            tls=session.ssl is not None,
        )
        trace = received_header(
            message.helo,
            message.remote_ip,
            self._settings.smtp_hostname,
            str(message.id),
            message.tls,
            message.received_at,
        )
        message = dataclasses.replace(message, raw=trace + message.raw, trace_length=len(trace))
        if self._enforce is not None:
            auth = await self._enforce(message)  # bounded by AUTH_TIMEOUT
            if auth.dmarc_reject:
                # One metric label for all domains; the domain goes to the log.
                server.note_refusal("550 dmarc reject")
                log.info("[smtp] DMARC reject from %s for %s", server.peer_ip, auth.dmarc_domain)
                return replies.DMARC_REJECT.format(domain=auth.dmarc_domain)
            message = dataclasses.replace(message, auth=auth)
        await self._writer.wait_for_room(BACKPRESSURE_WAIT)
        try:
            committed = self._writer.submit(message, wait=self._settings.durable)
        except QueueFull as why:
            server.note_refusal(f"451 {why}")
            return replies.QUEUE_FULL
        if committed is not None:
            try:
                await asyncio.wait_for(committed, self._settings.durable_timeout)
            except TimeoutError:
                # wait_for cancelled the future: the writer drops the message
                # unless it is already being written (then the retry duplicates).
                log.warning("[smtp] commit wait timed out for %s", message.id)
                return replies.QUEUE_FULL
        metrics.ACCEPTED.inc()
        metrics.ACK_SECONDS.observe(time.perf_counter() - started)
        log.info(
            "[smtp] accepted id=%s rcpts=%d size=%d from=%s",
            message.id,
            len(message.recipients),
            len(message.raw),
            server.peer_ip,
        )
        return replies.QUEUED.format(id=message.id)

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

    def make() -> Session:
        return Session(
            handler,
            connections,
            settings,
            command_call_limit=call_limits,
            data_size_limit=settings.max_message_size,
            enable_SMTPUTF8=True,
            hostname=settings.smtp_hostname,
            ident="ESMTP",
            timeout=settings.smtp_timeout,
            tls_context=tls_context(),
            proxy_protocol_timeout=PROXY_TIMEOUT if settings.proxy_protocol else None,
            loop=asyncio.get_running_loop(),
        )

    return make
