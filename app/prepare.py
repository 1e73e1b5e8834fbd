"""Prepare stage: between the SMTP handler and the writer.

Every accepted message is prepared here, started in one place for every ACK
mode: parsed and checked (SPF, DKIM, ARC, DMARC, bounded by AUTH_TIMEOUT),
the two concurrently. A message that may parse slowly (parse.parses_slowly:
large, or many header lines, addresses, encoded words or MIME parts) is
parsed in a parser process (app/parsers.py), bounded by PARSE_TIMEOUT, so
no parse of hostile input holds the event loop that answers every session;
other mail is parsed on the loop (a few milliseconds at most). The codes
and verification link (app/codes.py) are read with the parse: on the loop
for mail with little text (parse.extracts_slowly), else in a parser process. `start()`
returns a task at once: the handler replies without waiting for it (except
with AUTH_CHECKS=enforce, whose verdict decides the reply) and the writer
awaits it before the batch insert.

A preparation never raises: a parser that fails gives best-effort or empty
fields, a parse past its bound gives empty fields and a note in the body, a
check that fails gives permerror or temperror, and the raw message is
stored either way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable

from . import metrics
from .model import AuthResult, Envelope, ParsedMail, Prepared
from .parse import EMPTY, extracts_slowly, parse_fields, parses_slowly, with_codes
from .parsers import Parsers
from .screen import Screen

log = logging.getLogger("app.prepare")

# The body of a message whose parse passed PARSE_TIMEOUT (its other fields are empty).
ABANDONED_NOTE = (
    "[This message took too long to read and is shown unparsed. "
    "Its raw source is stored unchanged.]"
)

Authenticate = Callable[[Envelope], Awaitable[AuthResult]]


class Preparer:
    def __init__(
        self, authenticate: Authenticate | None, parse_timeout: float, screen: Screen | None = None
    ) -> None:
        self._authenticate = authenticate
        self._parse_timeout = parse_timeout
        self._parsers = Parsers(parse_timeout)
        self._screen = screen  # the DATA-time defence checks (app/screen.py)
        self._running: set[asyncio.Task[Prepared]] = set()

    def start(self, envelope: Envelope) -> asyncio.Task[Prepared]:
        """Begin preparing `envelope`; the task's result is its Prepared record."""
        task = asyncio.get_running_loop().create_task(self._prepare(envelope))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    async def _prepare(self, envelope: Envelope) -> Prepared:
        checks = None
        if self._authenticate is not None and envelope.auth is None:
            # Checks wait on DNS: they run while the parse uses the CPU.
            checks = asyncio.ensure_future(self._authenticate(envelope))
        screening = self._screen.begin(envelope) if self._screen is not None else None
        parsed = await self._parse(envelope)
        findings, refusal = await screening.finish(parsed) if screening else ((), None)
        auth = await checks if checks is not None else envelope.auth
        return Prepared(envelope, parsed, auth, findings, refusal)

    async def _parse(self, envelope: Envelope) -> ParsedMail:
        """Its fields, codes and verification link: on the loop when both are
        quick, else in a parser process."""
        raw = envelope.as_received
        if parses_slowly(raw):
            return await self._parse_elsewhere(envelope)
        parsed = parse_fields(raw)
        if not extracts_slowly(parsed):
            return with_codes(parsed)
        # Much text: its codes are read in a parser process (parsed again there);
        # one abandoned there keeps these fields, without codes.
        elsewhere = await self._parsers.parse(raw)
        return parsed if elsewhere is None else elsewhere

    async def _parse_elsewhere(self, envelope: Envelope) -> ParsedMail:
        """Parse in a parser process; past its bound, stored unparsed (with a note)."""
        parsed = await self._parsers.parse(envelope.as_received)
        if parsed is None:
            log.warning(
                "[prepare] parsing %s (%d bytes) was not done within PARSE_TIMEOUT (%.0fs): "
                "stored unparsed, raw kept",
                envelope.id,
                len(envelope.raw),
                self._parse_timeout,
            )
            metrics.PARSE_ABANDONED.inc()
            return dataclasses.replace(EMPTY, body=ABANDONED_NOTE)
        return parsed

    def close(self) -> None:
        """Stop: preparations still running belong to spooled messages (prepared
        again on replay); then the parser processes."""
        for task in list(self._running):
            task.cancel()
        self._parsers.close()
