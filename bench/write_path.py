"""`python -m bench.write_path`: the write path's worst cases, each against a
baseline measured in the same run (issue 21).

  spool    shutdown spooling of N queued 4 KB messages (QUEUE_SIZE's default,
           10,000) into a fresh spool in the temporary directory: one batch
           file (Spool.save_pending, what drain does) against one durable
           file per message (write, fsync, rename, fsync the directory: how
           drain did it before).
  parse    Subjects of `=?utf-8?q?a?=` encoded words (245 KB, 980 KB, 2 MB:
           the issue's figures): parse() of each, against a typical 4 KB
           message; and where the service parses it (inline or a parser
           process: app/prepare.py's `parses_slowly`).
  greeting our service receiving the 980 KB and 2 MB messages while another
           client connects every 20 ms: the slowest 220 greeting, against the
           same probe with nothing else going on.
`--smoke`: 200 messages and the smallest subject, for CI (no thresholds).
"""

from __future__ import annotations

import argparse
import asyncio
import smtplib
import tempfile
import time
from pathlib import Path

from app import prepare, spool
from app.model import Envelope
from app.parse import parse

from .client import typical
from .targets import start_service

WORD = b"=?utf-8?q?a?= "
SUBJECT_SIZES = (245_000, 980_000, 2_000_000)
PROBE_EVERY = 0.02  # seconds between greeting probes


def envelopes(count: int) -> list[Envelope]:
    raw = typical("spool")
    return [
        Envelope.new("s@sender.test", ("r@example.com",), raw, "127.0.0.1", "bench.test")
        for _ in range(count)
    ]


def spool_rows(count: int) -> list[str]:
    """Seconds to spool `count` messages, both ways, in fresh directories."""
    queued = envelopes(count)
    with tempfile.TemporaryDirectory(prefix="bench-spool-") as base:
        started = time.perf_counter()
        errors = spool.Spool(Path(base) / "before").save_pending_each(queued)
        before = time.perf_counter() - started
        started = time.perf_counter()
        errors += spool.Spool(Path(base) / "now").save_pending(queued)
        now = time.perf_counter() - started
        assert not any(errors), errors
    return [
        f"| spool {count} x 4 KB, one file each (before) | {before:.2f} s | 1.00 |",
        f"| spool {count} x 4 KB, one batch file (now) | {now:.2f} s | {now / before:.3f} |",
    ]


def hostile(size: int) -> bytes:
    subject = WORD * (size // len(WORD))
    return b"From: a@sender.test\r\nTo: r@example.com\r\nSubject: " + subject + b"\r\n\r\nx\r\n"


def parse_rows(sizes: tuple[int, ...]) -> list[str]:
    started = time.perf_counter()
    parse(typical("baseline"))
    base = time.perf_counter() - started
    rows = [f"| parse typical 4 KB (baseline) | {base * 1000:.2f} ms | 1 |"]
    for size in sizes:
        raw = hostile(size)
        started = time.perf_counter()
        parse(raw)
        took = time.perf_counter() - started
        where = "parser process" if prepare.parses_slowly(raw) else "event loop"
        rows.append(
            f"| parse {size // 1000} KB Subject of encoded words ({where}) "
            f"| {took * 1000:.1f} ms | {took / base:.0f} |"
        )
    return rows


async def slowest_greeting(port: int, during: asyncio.Future[int] | None) -> float:
    """The slowest connect-to-220 of probes every PROBE_EVERY seconds, while
    `during` runs (or for 2 s)."""
    slowest = 0.0
    deadline = time.monotonic() + 2
    while (during is not None and not during.done()) or (
        during is None and time.monotonic() < deadline
    ):
        started = time.perf_counter()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readline()
        slowest = max(slowest, time.perf_counter() - started)
        writer.close()
        await asyncio.sleep(PROBE_EVERY)
    return slowest


def send_raw(port: int, raw: bytes) -> int:
    """The reply code to `raw`."""
    with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
        try:
            client.sendmail("a@sender.test", ["r@example.com"], raw)
        except smtplib.SMTPDataError as error:
            return error.smtp_code
    return 250


async def greeting_rows(sizes: tuple[int, ...]) -> list[str]:
    target = await start_service("durable", 1)
    try:
        quiet = await slowest_greeting(target.port, None)
        rows = [f"| slowest 220, nothing else running (baseline) | {quiet * 1000:.1f} ms | 1 |"]
        for size in sizes:
            started = time.perf_counter()
            sending = asyncio.ensure_future(asyncio.to_thread(send_raw, target.port, hostile(size)))
            slowest = await slowest_greeting(target.port, sending)
            reply = await sending
            took = time.perf_counter() - started
            rows.append(
                f"| slowest 220 while a {size // 1000} KB Subject of encoded words is received "
                f"(its reply: {reply} after {took:.1f} s) | {slowest * 1000:.1f} ms "
                f"| {slowest / quiet:.1f} |"
            )
        return rows
    finally:
        await target.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.write_path", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--only", default="spool,parse,greeting", help="spool,parse,greeting")
    args = parser.parse_args()
    chosen = set(args.only.split(","))
    sizes = SUBJECT_SIZES[:1] if args.smoke else SUBJECT_SIZES
    rows = ["| run | figure | vs baseline |", "|---|---|---|"]
    if "spool" in chosen:
        rows += spool_rows(200 if args.smoke else 10_000)
    if "parse" in chosen:
        rows += parse_rows(sizes)
    if "greeting" in chosen:
        rows += asyncio.run(greeting_rows(sizes[1:] or sizes))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
