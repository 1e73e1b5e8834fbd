"""An asyncio SMTP load client that times each message.

Each session says EHLO once, then for each message pipelines MAIL, RCPT and
DATA (PIPELINING), sends the body and times DATA-end to the final reply.
A shared pacer spreads sends at a fixed total rate when asked.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time


@dataclasses.dataclass
class Sent:
    marker: str
    latency: float  # seconds from the end of DATA to the final reply
    acked_at: float  # wall clock (time.time()) of the reply
    code: int


class Pacer:
    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next = time.perf_counter()

    async def wait(self) -> None:
        now = time.perf_counter()
        self.next = max(self.next + self.interval, now)
        if self.next > now:
            await asyncio.sleep(self.next - now)


def stuffed(body: bytes) -> bytes:
    """`body` (CRLF lines) dot-stuffed and terminated, ready to send."""
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    if body.startswith(b"."):
        body = b"." + body
    return body.replace(b"\r\n.", b"\r\n..") + b".\r\n"


def typical(marker: str, size: int = 4096) -> bytes:
    """A plain ~`size`-byte message whose Subject is `marker`."""
    head = (
        f"From: Sender <bench@sender.test>\r\nTo: u@example.com\r\nSubject: {marker}\r\n"
        f"Message-ID: <{marker}@sender.test>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
    ).encode()
    line = b"The quick brown fox jumps over the lazy dog, again and again. 0123456789\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


async def _reply(reader: asyncio.StreamReader) -> int:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return int(line[:3])


async def session(
    port: int,
    bodies: list[tuple[str, bytes]],
    results: list[Sent],
    pacer: Pacer | None = None,
    rcpt: bytes = b"u@example.com",
    source: str | None = None,
) -> int:
    """Send `bodies` (marker, stuffed bytes) on one connection (from the
    loopback address `source`, if given); return errors."""
    errors = 0
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, limit=1 << 20, local_addr=(source, 0) if source else None
    )
    try:
        await _reply(reader)
        writer.write(b"EHLO bench.test\r\n")
        await _reply(reader)
        envelope = b"MAIL FROM:<bench@sender.test>\r\nRCPT TO:<" + rcpt + b">\r\nDATA\r\n"
        for marker, body in bodies:
            if pacer is not None:
                await pacer.wait()
            writer.write(envelope)
            codes = [await _reply(reader) for _ in range(3)]
            if codes[2] != 354:
                errors += 1
                writer.write(b"RSET\r\n")
                await _reply(reader)
                continue
            writer.write(body)
            started = time.perf_counter()
            code = await _reply(reader)
            results.append(Sent(marker, time.perf_counter() - started, time.time(), code))
            errors += code != 250
        writer.write(b"QUIT\r\n")
        await _reply(reader)
    except (ConnectionError, OSError):
        errors += 1
    finally:
        writer.close()
    return errors


async def idle_connections(port: int, count: int) -> tuple[list[asyncio.StreamWriter], int]:
    """Open `count` connections that read the greeting and stay idle."""
    writers, failures = [], 0

    async def one() -> None:
        nonlocal failures
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            line = await reader.readline()
            if not line.startswith(b"220"):
                failures += 1
                writer.close()
                return
            writers.append(writer)
        except OSError:
            failures += 1

    for start in range(0, count, 500):
        await asyncio.gather(*(one() for _ in range(min(500, count - start))))
    return writers, failures


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
