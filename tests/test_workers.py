"""WORKERS=N: processes sharing the port, supervised, drained together."""

from __future__ import annotations

import os
import signal
import subprocess

from .helpers import eventually
from .load import Load, verify


def worker_pids(supervisor_pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(supervisor_pid)], capture_output=True, text=True)
    return [int(pid) for pid in out.stdout.split()]


def test_two_workers_restart_and_drain(make_server, database_url):
    server = make_server(workers="2", ack_mode="instant")
    server.wait_for_log(r"(?s)domains loaded.*domains loaded")  # both workers
    assert server.process is not None
    pids = eventually(
        lambda: len(worker_pids(server.process.pid)) == 2 and worker_pids(server.process.pid)
    )
    load = Load(server.port, sessions=8, per_session=150).start()
    load.wait_for(250, at_least=200)
    os.kill(pids[1], signal.SIGKILL)  # a worker dies mid-load
    server.wait_for_log(r"worker 1 exited with -9; restarting")
    eventually(lambda: len(set(worker_pids(server.process.pid)) - {pids[1]}) == 2)
    server.wait_for_log(r"(?s)(listening on.*){3}")  # the new worker serves
    load.wait_for(250, at_least=600)
    assert server.stop() == 0  # SIGTERM to the supervisor drains every worker
    load.stop.set()
    load.join()
    assert server.log.count("[service] stopped") == 2
    figures = verify(load, database_url, timeout=5)
    # Messages queued in the killed worker are the documented kill -9 window of
    # instant mode; everything else that got 250 is stored once.
    assert figures["duplicates"] == 0 and figures["refused_but_stored"] == 0
    print(f"workers: {figures}")
