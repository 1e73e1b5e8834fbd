"""Lock-wait probes: bench.retention's Probe (the writer's insert, or the
website's mailbox read, every 2 ms, slowest kept) in threads of their own,
and a watcher adding up the time each spends waiting for a lock (what a
busy CPU cannot inflate: a probe descheduled is not waiting for a lock)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator

import asyncpg

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


class LockWatch(threading.Thread):
    """Adds to each probe's `locked` the time between two looks at
    pg_stat_activity that both found it waiting for a lock; `longest` keeps,
    per probe's pid, its longest single wait (one statement's, unbroken)."""

    def __init__(self, url: str, probes: list[Probe]) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.probes = {probe.pid: probe for probe in probes}
        self.longest = dict.fromkeys(self.probes, 0.0)
        self.running = True

    def run(self) -> None:
        asyncio.run(self.watch())

    async def watch(self) -> None:
        conn = await asyncpg.connect(self.url)
        waiting: set[int] = set()
        current = dict.fromkeys(self.probes, 0.0)  # the wait going on, per pid
        last = time.perf_counter()
        try:
            while self.running:
                rows = await conn.fetch(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE pid = ANY($1::int[]) AND wait_event_type = 'Lock'",
                    list(self.probes),
                )
                now = time.perf_counter()
                still = {row["pid"] for row in rows}
                for pid in self.probes:
                    if pid in still & waiting:
                        self.probes[pid].locked += now - last
                        current[pid] += now - last
                        self.longest[pid] = max(self.longest[pid], current[pid])
                    else:
                        current[pid] = 0.0
                waiting, last = still, now
                await asyncio.sleep(0.002)
        finally:
            await conn.close()

    def stop(self) -> None:
        self.running = False
        self.join()


@contextlib.contextmanager
def probing(url: str) -> Iterator[tuple[Probe, Probe]]:
    """(reader, inserter) probes on `url`, running before the block starts (each
    has finished a few rounds) until it ends (a statement still waiting then
    is waited for, so its wait counts)."""
    threads = [ProbeThread(url, READ), ProbeThread(url, INSERT)]
    for thread in threads:
        thread.start()
    watch = None
    try:
        eventually(lambda: all(t.probe.count >= 20 for t in threads))
        watch = LockWatch(url, [t.probe for t in threads])
        watch.start()
        yield threads[0].probe, threads[1].probe
    finally:
        for thread in threads:
            thread.stop()
        if watch is not None:
            watch.stop()
