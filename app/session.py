"""The SMTP session: aiosmtpd's protocol class, changed in this one subclass.

What `Session` changes for port 25: DATA is read in 64 KiB chunks and ends
only at CRLF.CRLF (long lines kept intact, memory bounded by the size limit
and the worker's receive budget, no smuggling); connection limits and the
PROXY trust rule (connections.py); our reply texts and enhanced codes
(replies.py) and the count of failed commands; and a session made from a
prototype rather than by aiosmtpd's costly __init__ (`Session.factory`).
The handler (smtp.py) answers the verbs.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import ipaddress
import re
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from aiosmtpd.proxy_protocol import V2_CMD, ProxyData
from aiosmtpd.smtp import SMTP

from . import metrics, replies
from .clients import client_key
from .config import Settings
from .connections import Connections, Hold
from .db_dedup import Confirmation
from .model import Finding

if TYPE_CHECKING:
    from .reputation import Result

CHUNK = 64 * 1024
TERMINATOR = b"\r\n.\r\n"
# RFC 5321 4.5.3.1.4: a command line is at most 512 octets; DESIGN.md allows
# up to 1000 (some clients send long MAIL parameters), CRLF excluded.
COMMAND_LINE_MAX = 998
UNTRUSTED_PROXY = "untrusted PROXY peer"
LIMIT_CODES = (b"421", b"452", b"552")  # replies that say a limit was reached

# The common path `<local@domain>` in a plain form: no need for aiosmtpd's
# RFC 5322 tokenizer, which also defines a class on every call (about 15% of
# a busy worker's CPU). Anything else takes aiosmtpd's own parser.
PLAIN_PATH = re.compile(
    r"\s*<([^\s<>()\[\]\\,;:\"@.][^\s<>()\[\]\\,;:\"@]*@"
    r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)>(.*)\Z",
    re.S,
)


def push_back(reader: asyncio.StreamReader, data: bytes | bytearray) -> None:
    """Return `data` to the front of `reader`: bytes read past the end of DATA
    are the client's next (pipelined) commands. StreamReader has no public
    unread; its buffer is a bytearray in CPython's asyncio and in uvloop."""
    reader._buffer[:0] = data  # type: ignore[attr-defined]


class Handler(Protocol):
    """What a session asks of its handler (app/smtp.py) beyond aiosmtpd's hooks."""

    def client_connected(self, server: Session) -> None: ...

    async def greeting_refusal(self, server: Session) -> tuple[str, str] | None: ...

    async def failed_command(self, server: Session) -> bool: ...

    def confirmed(self, confirmation: Confirmation) -> None: ...


class Session(SMTP):
    """One SMTP connection."""

    def __init__(
        self, handler: Handler, connections: Connections, settings: Settings, **kwargs: Any
    ) -> None:
        super().__init__(handler, **kwargs)
        self._setup(connections, settings)

    def _setup(self, connections: Connections, settings: Settings) -> None:
        # aiosmtpd keeps this dict on the class, shared by all sessions.
        self.command_size_limits = collections.defaultdict(lambda: COMMAND_LINE_MAX)
        self.command_size_limit = COMMAND_LINE_MAX
        self._connections = connections
        self._settings = settings
        self._refusal: str | None = None
        self._ip = ""
        self._counted_key: str | None = None  # the key this session holds in per_client
        self._hold = Hold()  # this session's bytes in the worker's receive budget
        self._errors = 0  # failed commands since the last delivered message (_count_failure)
        self._refused_rcpts = 0  # refused recipients of this transaction, none accepted yet
        self._in_rcpt = False  # a RCPT command is being answered
        self._deadline: asyncio.TimerHandle | None = None
        # Resend detection (app/db_dedup.py): the message a 250 to DATA is for
        # (set by the handler), then, once that 250 is out, until a command the
        # client sent after it saw it confirms it; and the bytes received since
        # that 250 was written (those buffered before were sent before).
        self.answered: Confirmation | None = None
        self._unconfirmed: Confirmation | None = None
        self._received_since_250 = 0
        # Inbound defence: the client's reputation lookups (started once its
        # address is known) and what this transaction's checks found.
        self.reputation: asyncio.Future[Result] | None = None
        self.findings: list[Finding] = []

    @classmethod
    def factory(
        cls,
        handler: Handler,
        connections: Connections,
        settings: Settings,
        current_tls: Callable[[], ssl.SSLContext | None],
        **options: Any,
    ) -> Callable[[], Session]:
        """Sessions for loop.create_server, each with the current TLS context.

        aiosmtpd's SMTP.__init__ rebuilds its command and hook tables with
        inspect.getmembers and dir() on every connection: a quarter of a busy
        worker's CPU. Here it runs once, on a prototype; each connection
        copies the prototype's attributes and renews what is its own: the
        stream and protocol state, the commands bound to it, the TLS
        context. tests/test_smtp_unit.py pins the attributes aiosmtpd's
        __init__ makes, so an upgrade that adds one fails there first.
        """
        loop = asyncio.get_running_loop()
        prototype = cls.__new__(cls)
        SMTP.__init__(prototype, handler, loop=loop, **options)
        shared = dict(vars(prototype))
        commands = list(prototype._smtp_methods)

        def make() -> Session:
            session = cls.__new__(cls)
            session.__dict__.update(shared)
            asyncio.StreamReaderProtocol.__init__(
                session,
                asyncio.StreamReader(loop=loop, limit=cls.line_length_limit),
                client_connected_cb=session._cb_client_connected,
                loop=loop,
            )
            session._smtp_methods = {name: getattr(session, "smtp_" + name) for name in commands}
            session.tls_context = current_tls()
            session._setup(connections, settings)
            return session

        return make

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
            # A link-local IPv6 peer comes with its zone ("fe80::1%eth0"), which
            # PostgreSQL's inet refuses: the address alone.
            self._ip = str(peer[0]).partition("%")[0] if peer else ""
            self._refusal = self._connections.admit(self)
            if self._refusal is None and self._settings.proxy_protocol:
                if not self._trusted_proxy(self._ip):
                    self._refusal = UNTRUSTED_PROXY
            elif self._refusal is None:
                self._refusal = self._count_client(self._ip)
                if self._refusal is None:
                    self.event_handler.client_connected(self)
            self._deadline = self.loop.call_later(
                self._settings.session_timeout,
                self._close_with,
                replies.SESSION_TIMEOUT,
                "session time limit",
            )

    def connection_lost(self, error: Exception | None) -> None:
        if self.reputation is not None:
            self.reputation.cancel()  # a finished task ignores it
        self._connections.release(self, self._counted_key, self._hold)
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(error)

    def _trusted_proxy(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self._settings.proxy_trusted)

    def _count_client(self, ip: str) -> str | None:
        key = client_key(ip)
        refusal = self._connections.count_client(key)
        if refusal is None:
            self._counted_key = key
        return refusal

    def accept_proxy(self, proxy: ProxyData) -> bool:
        """PROXY header read: the client is the address it names (LOCAL: the balancer)."""
        if proxy.src_addr is not None and proxy.command is not V2_CMD.LOCAL:
            self._ip = str(proxy.src_addr)
        refusal = self._count_client(self._ip)
        if refusal is not None:
            self._close_with(refusal, refusal)
            return False
        self.event_handler.client_connected(self)
        return True

    def note_refusal(self, reason: str, detail: str = "") -> None:
        self._connections.refusals.note(self._ip, reason, detail)

    def _close_with(self, reply: str | None, reason: str | None) -> None:
        """Say `reply` (a 421; None: nothing) and close; log `reason` as a refusal."""
        if reason is not None:
            self.note_refusal(reason)
        if self.transport is not None and not self.transport.is_closing():
            if reply is not None:
                self._writer.write(reply.encode() + b"\r\n")
            self.transport.close()

    async def _handle_client(self) -> None:
        if self._refusal == UNTRUSTED_PROXY:  # its PROXY header would be a lie we believe
            self._close_with(None, UNTRUSTED_PROXY)
            return
        if self._refusal is not None:
            self._close_with(self._refusal, self._refusal)
            return
        # Behind a balancer the client is known only from its PROXY header:
        # the handler's handle_PROXY asks then.
        if not self._settings.proxy_protocol and await self.refused_at_greeting():
            return
        await super()._handle_client()

    async def refused_at_greeting(self) -> bool:
        """Refuse the client (421, closed) if receiving is paused or it is blocked."""
        refused = await self.event_handler.greeting_refusal(self)
        if refused is not None:
            self._close_with(*refused)
        return refused is not None

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        match = PLAIN_PATH.match(arg) if arg else None
        if match is not None and ".." not in match.group(1):
            return match.group(1), match.group(2).lstrip()
        return super()._getaddr(arg)

    def say_goodbye(self) -> None:
        """Shutdown: 421 and close (not a refusal of this client)."""
        self._close_with(replies.SHUTTING_DOWN, None)

    # The receive budget ------------------------------------------------------

    def hold(self, size: int, declared: bool = False) -> bool:
        """Count `size` bytes of this session's message against the worker's
        receive budget (never less than already counted); False if over it.
        `declared`: the size the client announced with SIZE= at MAIL."""
        self._hold.client = self._counted_key or client_key(self._ip)
        granted = self._connections.grow(self._hold, size)
        self._hold.declared |= declared and granted
        return granted

    def _release_hold(self) -> None:
        self._connections.release_hold(self._hold)

    def _set_post_data_state(self) -> None:
        # Also after RSET, HELO and EHLO (aiosmtpd's _set_rset_state calls this).
        self._refused_rcpts = 0
        self._release_hold()
        super()._set_post_data_state()
        self.findings = []
        self._connections.transaction_ended()

    # Replies -----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._received_since_250 += len(data)
        super().data_received(data)

    def _confirm_if_seen(self) -> None:
        """Confirm the last 250 to DATA once a byte the client sent after it
        was read: a command, or a message's content sent after our 354 (which
        followed the 250). Bytes already buffered when it went out (pipelined
        behind the message's end) confirm nothing."""
        buffered = len(self._reader._buffer)  # type: ignore[attr-defined]
        if self._unconfirmed is not None and self._received_since_250 > buffered:
            self.event_handler.confirmed(self._unconfirmed)
            self._unconfirmed = None

    async def push(self, status: Any) -> None:
        if isinstance(status, str):
            status = status.encode("utf-8")
        self._confirm_if_seen()  # a reply to a command sent after a 250
        status = replies.with_enhanced_code(status)
        if status[:3] in LIMIT_CODES:
            # A limit was hit (aiosmtpd's command budgets included); policy
            # refusals are noted where they are decided, with their domain.
            self.note_refusal(status.decode("utf-8", "replace"))
        await super().push(status)
        if status[:3] == b"421":  # RFC 5321 4.2.2: the service closes the channel
            self._close_with(None, None)
            return
        if status[:1] != b"5":
            return
        if self._count_failure() and await self.event_handler.failed_command(self):
            self._close_with(replies.ERRORS_BLOCKED, "blocked for errors")
        elif self._too_many_failures():
            self._close_with(replies.TOO_MANY_ERRORS, "too many errors")

    def _count_failure(self) -> bool:
        """Count a failed command; False for a refused recipient of a
        transaction that has one of ours (it never counts).

        Failed commands since the last delivered message (as Postfix's
        smtpd_hard_error_limit) reach MAX_ERRORS: a client that keeps failing
        is probing or broken; do not let it spin the server. Except a
        mailing list's foreign recipients: a transaction that has accepted a
        recipient is never cut by refusals of its others, and those refused
        before its first accepted one are forgiven then. Until then they
        count as one failed command (so transactions of nothing but refused
        recipients still reach MAX_ERRORS), and one transaction is cut at
        max(MAX_RECIPIENTS, MAX_ERRORS) of them: a list that long with none
        of ours is a flood. The error block of the rate limits
        (RATE_ERRORS_PER_IP) counts every failure this does not forgive in
        advance: each refused recipient of a transaction until it has one of
        ours (a counter cannot be taken back later).
        """
        if not (self._in_rcpt and self.in_transaction):
            self._errors += 1
            return True
        assert self.envelope is not None
        if self.envelope.rcpt_tos:
            return False
        self._refused_rcpts += 1
        self._errors += self._refused_rcpts == 1
        return True

    def _too_many_failures(self) -> bool:
        settings = self._settings
        flood = max(settings.max_recipients, settings.max_errors)
        return self._errors >= settings.max_errors or self._refused_rcpts >= flood

    @functools.wraps(SMTP.smtp_RCPT)  # keeps aiosmtpd's syntax text for HELP
    async def smtp_RCPT(self, arg: str | None) -> None:
        self._in_rcpt = True
        try:
            await super().smtp_RCPT(arg)
        finally:
            self._in_rcpt = False
        if self._refused_rcpts and self.envelope is not None and self.envelope.rcpt_tos:
            self._errors -= 1  # the transaction has one of ours: its refusals were a list's
            self._refused_rcpts = 0

    # DATA --------------------------------------------------------------------

    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push(replies.NEED_RCPT)
            return
        if arg:
            await self.push(replies.DATA_SYNTAX)
            return
        if not self.hold(CHUNK):  # no room for even one read: do not take the upload
            await self.push(replies.BUSY_RECEIVING)
            return
        self._connections.start_transfer(self._hold)
        await self.push(replies.START_DATA)
        try:
            async with asyncio.timeout(self._settings.data_timeout):
                content, refusal = await self._read_data()
        except TimeoutError:
            self._close_with(replies.DATA_TIMEOUT, "DATA time limit")
            return
        if refusal is not None:
            self._set_post_data_state()
            await self.push(refusal)
            return
        # A pipelined 250 is confirmed by this content, before this message is
        # queued (it may be a new message with the same bytes).
        self._confirm_if_seen()
        # A bytearray (the stubs say bytes): handle_DATA prepends the trace in place.
        self.envelope.content = self.envelope.original_content = content  # type: ignore[assignment]
        status = await self._call_handler_hook("DATA")
        # The reply before the transaction ends: a draining service waits for
        # sessions in a transaction, so a 250 it owes is written before it closes.
        # Counted from here: push writes before it can yield to the reader.
        self._received_since_250 = 0
        await self.push(status)
        self._set_post_data_state()
        answered, self.answered = self.answered, None
        if status.startswith("250"):
            self._errors = 0  # mail delivered: the client is not just failing
            self._unconfirmed = answered
        if self._connections.closing:
            self.say_goodbye()

    async def _read_data(self) -> tuple[bytearray, str | None]:
        """The dot-unstuffed message, or the refusal to send after its end.

        Reads 64 KiB chunks and looks for CRLF.CRLF only (a bare LF or CR never
        ends DATA). A leading CRLF stands for the end of the DATA command line,
        so an empty message ('.' alone) ends the same way. Bytes after the
        terminator (pipelined commands) go back to the reader. Past the size
        limit or the receive budget, only a tail that may hold the terminator
        is kept, and the message is refused once it ends.
        """
        limit = self.data_size_limit or 0
        buffer = bytearray(b"\r\n")
        scan_from = 0
        refusal: str | None = None
        while True:
            chunk = await self._reader.read(CHUNK)
            if not chunk:  # peer closed: aiosmtpd cancels this task at EOF
                raise asyncio.CancelledError
            self._reset_timeout()  # SMTP_TIMEOUT counts idleness, also in DATA
            buffer += chunk
            end = buffer.find(TERMINATOR, scan_from)
            if end != -1:
                if len(buffer) > end + len(TERMINATOR):
                    push_back(self._reader, buffer[end + len(TERMINATOR) :])
                if refusal is None and limit and end > limit:  # `end` is the stuffed size
                    refusal = replies.MESSAGE_TOO_BIG
                if refusal is not None:
                    return bytearray(), refusal
                # Trim in place, unstuff dots (RFC 5321 4.5.2; the leading CRLF
                # makes a first-line dot count), drop the leading CRLF (O(1) for
                # a bytearray). A 25 MB message is held at most twice here.
                del buffer[end + 2 :]
                if b"\r\n." in buffer:
                    buffer = buffer.replace(b"\r\n.", b"\r\n")
                del buffer[:2]
                return buffer, None
            if refusal is None:
                if limit and len(buffer) > limit + 2:
                    refusal = replies.MESSAGE_TOO_BIG
                elif not self.hold(len(buffer)):  # over the budget, or gave way
                    refusal = replies.BUSY_RECEIVING
            if refusal is not None:
                # Keep only a tail that may hold part of the terminator.
                del buffer[: -len(TERMINATOR)]
            scan_from = max(0, len(buffer) - len(TERMINATOR) + 1)
