"""Parser processes: parse.parse() away from the event loop, bounded in time.

The prepare stage sends here the messages that may parse slowly (large ones,
or headers, lines, encoded words or MIME parts past parse.py's INLINE_*
limits). PROCESSES processes (spawned on first use) parse one message each
at a time; a message waits for a free one at most `timeout` too (a dozen
hostile messages queued for the processes must not hold back the next
one's 250 past DURABLE_TIMEOUT), so no message waits for its parse more
than twice its bound. A parse longer than `timeout` is abandoned: the
process stops it itself (an alarm), or, stuck in C code, is killed and
replaced; the caller gets None and stores the message unparsed (its raw
bytes are kept whatever happens).

The processes ignore SIGTERM and SIGINT: systemd signals the whole process
group at stop, and Ctrl-C the whole foreground group, while the service
still needs them to parse what it drains. A message goes only to a process
that has said it started (so ignores them); one that ended while starting
is replaced and the message goes to the next. The service stops them
itself, last (`close`); one whose parent died ends at its next read.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.connection
import signal
from types import FrameType

from .model import ParsedMail
from .parse import parse

log = logging.getLogger("app.prepare")

PROCESSES = 2  # one hostile message never holds them all
KILL_GRACE = 2.0  # seconds past the bound before a process that has not answered is killed
START_WAIT = 60.0  # seconds a new process may take to start
START_TRIES = 3  # processes tried for one message when they end while starting
STARTED = b"started"
STOP_WAIT = 1.0  # seconds a process gets to end after its pipe closes


class _Overtime(BaseException):
    """Raised in a parser process when a parse passes its bound (not an
    Exception: parse() catches those, and would go on with its fallback)."""


def _overtime(signum: int, frame: FrameType | None) -> None:
    raise _Overtime


def _serve(pipe: multiprocessing.connection.Connection, timeout: float) -> None:
    """A parser process: raw bytes in, a ParsedMail (or None: abandoned) out."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGALRM, _overtime)
    pipe.send_bytes(STARTED)  # from now on a stop signal to the group does not end it
    while True:
        try:
            raw = pipe.recv_bytes()
        except (EOFError, OSError):  # the service closed the pipe, or died
            return
        result: ParsedMail | None = None
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            result = parse(raw)
        except _Overtime:
            pass
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            pipe.send(result)
        except OSError:  # the service is gone
            return


class _Process:
    def __init__(self, timeout: float) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, timeout), daemon=True)
        self.process.start()
        child.close()
        self._wait = timeout + KILL_GRACE
        self._started = False

    def parse(self, raw: bytes) -> tuple[str, ParsedMail | None]:
        """Blocking (run it in a thread): ("answered", the parse or None if it
        gave up at its bound), ("silent", None) if it did not answer in time,
        or ("lost", None) if it ended while starting, before taking `raw`
        (a stop signal sent to the whole group then ends it)."""
        if not self._started:
            if not self._pipe.poll(START_WAIT):
                return "silent", None
            try:
                self._pipe.recv_bytes()
            except EOFError:
                return "lost", None
            self._started = True
        self._pipe.send_bytes(raw)
        if not self._pipe.poll(self._wait):
            return "silent", None
        result = self._pipe.recv()
        return "answered", result if isinstance(result, ParsedMail) else None

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def stop(self, wait: float) -> None:
        """Close the pipe (the process ends at its next read); kill it if alive after `wait`."""
        self._pipe.close()
        self.process.join(wait)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class Parsers:
    """PROCESSES parser processes, each parse bounded by `timeout` seconds."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._free: asyncio.Queue[_Process] | None = None
        self._all: list[_Process] = []

    async def parse(self, raw: bytes) -> ParsedMail | None:
        """`raw` parsed in a parser process; None if abandoned (no process
        free within the bound, past the bound, or the process died)."""
        if self._free is None:
            self._free = asyncio.Queue()
            for _ in range(PROCESSES):
                self._free.put_nowait(self._start())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        for _ in range(START_TRIES):
            try:
                process = await asyncio.wait_for(self._free.get(), deadline - loop.time())
            except TimeoutError:
                log.info("[prepare] every parser process stayed busy for PARSE_TIMEOUT")
                return None
            try:
                outcome, result = await asyncio.to_thread(process.parse, raw)
            except (OSError, EOFError) as error:  # it died (out of memory, killed)
                outcome, result = f"failed ({error!r})", None
            # (Cancelled: the service is stopping, and `close` stops every process.)
            if outcome != "answered" or not process.alive:
                log.error("[prepare] a parser process %s: replaced", outcome)
                self._all.remove(process)
                process.stop(0)
                process = self._start()
            self._free.put_nowait(process)
            if outcome != "lost":
                return result
        return None

    def _start(self) -> _Process:
        process = _Process(self._timeout)
        self._all.append(process)
        return process

    def close(self) -> None:
        """Stop every process (after the drain: nothing is left to parse)."""
        for process in self._all:
            process.stop(STOP_WAIT)
        self._all.clear()
