"""WORKERS>1: a supervisor running N `serve` processes on one port.

Each worker binds the port with SO_REUSEPORT (the kernel spreads
connections), has its own pool and writer, and drains on SIGTERM. The
supervisor starts the embedded PostgreSQL once (if DATABASE_URL is unset),
restarts a worker that dies (backing off if it keeps dying), and forwards
each SIGTERM/SIGINT to all workers (as SIGTERM: the first drains, a second
hurries) and waits for them to drain. Workers run in process groups of
their own, so a Ctrl-C in the terminal reaches the supervisor only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time

from . import db_connect, embedded
from .config import Settings

log = logging.getLogger("app.workers")

WORKER_ENV = "APP_WORKER_INDEX"  # set in each worker: the worker's number
RESTART_BACKOFF_MAX = 30.0


def worker_index() -> int | None:
    value = os.environ.get(WORKER_ENV)
    return int(value) if value is not None else None


class Supervisor:
    def __init__(self, settings: Settings, argv: list[str]) -> None:
        self.settings = settings
        self.argv = argv
        self.workers: dict[int, subprocess.Popen[bytes]] = {}
        self.started_at: dict[int, float] = {}
        self.backoff: dict[int, float] = {}
        self.stopping = False

    def spawn(self, index: int) -> None:
        env = {**os.environ, WORKER_ENV: str(index)}
        if self.settings.database_url is None:
            env["DATABASE_URL"] = self.database_url
        # A process group of its own: a Ctrl-C in the terminal reaches only the
        # supervisor, which asks each worker once per signal (drain, then hurry).
        self.workers[index] = subprocess.Popen(
            [sys.executable, "-m", "app", *self.argv], env=env, process_group=0
        )
        self.started_at[index] = time.monotonic()
        log.info("[workers] worker %d started (pid %d)", index, self.workers[index].pid)

    def stop(self, signum: int, frame: object) -> None:
        self.stopping = True
        self.forward(signal.SIGTERM)

    def reload(self, signum: int, frame: object) -> None:
        log.warning("[workers] SIGHUP: reloading every worker")
        self.forward(signal.SIGHUP)

    def forward(self, signum: int) -> None:
        for process in self.workers.values():
            if process.poll() is None:
                process.send_signal(signum)

    def run(self) -> int:
        self.database_url = embedded.database_url(self.settings, announce=True)
        try:  # workers that cannot connect would only be restarted again and again
            asyncio.run(db_connect.reach(self.database_url))
        except db_connect.Unusable as error:
            log.error("[db] %s", error)
            return 1
        if self.settings.metrics_port and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # One directory per run: stale files of an earlier run would count twice.
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="tempmail-metrics-")
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGHUP, self.reload)
        for index in range(self.settings.workers):
            self.spawn(index)
        while not self.stopping:
            time.sleep(0.2)
            for index, process in list(self.workers.items()):
                if process.poll() is None or self.stopping:
                    continue
                self.restart(index, process.returncode)
        deadline = time.monotonic() + self.settings.drain_timeout + 10
        codes = []
        for process in self.workers.values():
            try:
                codes.append(process.wait(max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                process.kill()
                codes.append(process.wait())
        log.info("[workers] all workers stopped")
        # -SIGTERM: a worker still starting up, with nothing to drain yet.
        return 0 if all(code in (0, -signal.SIGTERM) for code in codes) else 1

    def restart(self, index: int, code: int) -> None:
        # A worker that lived a while is restarted at once; a crash loop backs off.
        lived = time.monotonic() - self.started_at[index]
        delay = 0.0 if lived > 60 else min(self.backoff.get(index, 0.5) * 2, RESTART_BACKOFF_MAX)
        self.backoff[index] = delay
        log.error("[workers] worker %d exited with %s; restarting in %.1fs", index, code, delay)
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(self.workers[index].pid)
        time.sleep(delay)
        if not self.stopping:
            self.spawn(index)
