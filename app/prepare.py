"""Prepare stage: between the SMTP handler and the writer.

Every accepted message is prepared here, started in one place for every ACK
mode: parsed (messages over PARSE_ELSEWHERE in a separate process, so a
20 MB parse never holds the event loop that answers every other session)
and checked (SPF, DKIM, ARC, DMARC, bounded by AUTH_TIMEOUT), the two
concurrently. `start()` returns a task at once: the handler replies without
waiting for it (except with AUTH_CHECKS=enforce, whose verdict decides the
reply) and the writer awaits it before the batch insert.

A preparation never raises: a parser that fails gives best-effort or empty
fields, a check that fails gives permerror or temperror, and the raw message
is stored either way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import signal
from collections.abc import Awaitable, Callable

from .model import AuthResult, Envelope, ParsedMail, Prepared
from .parse import EMPTY, parse

log = logging.getLogger("app.prepare")

# Messages larger than this are parsed in a separate process: parsing 20 MB
# takes seconds of CPU, and in a thread it would hold the GIL against the loop.
PARSE_ELSEWHERE = 1024 * 1024

Authenticate = Callable[[Envelope], Awaitable[AuthResult]]


class Preparer:
    def __init__(self, authenticate: Authenticate | None) -> None:
        self._authenticate = authenticate
        self._parser_pool: concurrent.futures.ProcessPoolExecutor | None = None
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
        raw = envelope.as_received
        try:
            parsed = await self._parse_elsewhere(raw) if len(raw) > PARSE_ELSEWHERE else parse(raw)
        except Exception:  # parse() never raises; a broken parser process might
            log.exception("[prepare] parsing %s failed: storing it unparsed", envelope.id)
            parsed = EMPTY
        auth = await checks if checks is not None else envelope.auth
        return Prepared(envelope, parsed, auth)

    async def _parse_elsewhere(self, raw: bytes) -> ParsedMail:
        """Parse in the parser process (started on first use); a thread if it broke."""
        if self._parser_pool is None:
            self._parser_pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                # A Ctrl-C in the terminal reaches the whole process group: the
                # parser must not die of it while the service drains through it.
                initializer=signal.signal,
                initargs=(signal.SIGINT, signal.SIG_IGN),
            )
        try:
            return await asyncio.get_running_loop().run_in_executor(self._parser_pool, parse, raw)
        except concurrent.futures.BrokenExecutor:
            log.error("[prepare] the parser process died; parsing in a thread")
            self._parser_pool = None
            return await asyncio.to_thread(parse, raw)

    def close(self) -> None:
        """Stop: preparations still running belong to spooled messages (prepared
        again on replay)."""
        for task in list(self._running):
            task.cancel()
        if self._parser_pool is not None:
            self._parser_pool.shutdown(wait=False, cancel_futures=True)
