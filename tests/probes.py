"""Lock-wait probes: bench.retention's Probe (the writer's insert, or the
website's mailbox read, every 2 ms, slowest kept) in threads of their own."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from bench.retention import INSERT, READ, Probe

from .helpers import eventually


class ProbeThread(threading.Thread):
    """One Probe (an insert unless told) running in a thread until `stop`."""

    def __init__(self, url: str, statement: str = INSERT) -> None:
        super().__init__(daemon=True)
        self.probe = Probe(url, statement)

    def run(self) -> None:
        asyncio.run(self.probe.run())

    def stop(self) -> None:
        self.probe.running = False
        self.join()


@contextlib.contextmanager
def probing(url: str) -> Iterator[tuple[Probe, Probe]]:
    """(reader, inserter) probes on `url`, running before the block starts (each
    has finished a few rounds) until it ends (a statement still waiting then
    is waited for, so its wait counts)."""
    threads = [ProbeThread(url, READ), ProbeThread(url, INSERT)]
    for thread in threads:
        thread.start()
    try:
        eventually(lambda: all(t.probe.count >= 20 for t in threads))
        yield threads[0].probe, threads[1].probe
    finally:
        for thread in threads:
            thread.stop()
