"""WORKERS=N: processes sharing the port, supervised, drained together."""

from __future__ import annotations

import os
import re
import signal
import subprocess

from app.spool import Spool

from .helpers import db_address, eventually, with_port
from .load import Load, verify
from .netfakes import TCPProxy
from .test_promises import send, subjects


def worker_pids(supervisor_pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(supervisor_pid)], capture_output=True, text=True)
    return [int(pid) for pid in out.stdout.split()]


def spool_with_two_workers(make_server, database_url: str) -> tuple[TCPProxy, str, list[str]]:
    """Mail acknowledged by two workers with the database away, spooled at stop."""
    proxy = TCPProxy(db_address(database_url))
    url = with_port(database_url, proxy.port)
    server = make_server(workers="2", ack_mode="instant", drain_timeout="1", database_url=url)
    # Both workers listening (lists loaded is not enough): the kernel spreads
    # connections only over the sockets bound so far.
    server.wait_for_log(r"(?s)(listening on.*){2}")
    proxy.cut()
    marks = [f"held-{n}" for n in range(30)]
    assert all(send(server.port, mark)[0] == 250 for mark in marks)
    assert server.stop() == 0
    return proxy, url, marks


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


def test_a_restarted_worker_replays_its_own_spool(make_server, database_url, tmp_path):
    """A worker stopped with the database down spools what it holds to its own
    SPOOL_DIR/worker-N; the supervisor restarts it and it replays those files
    (they used to wait for the next restart of the whole service)."""
    proxy = TCPProxy(db_address(database_url))
    try:
        server = make_server(
            workers="2",
            ack_mode="instant",
            drain_timeout="1",
            database_url=with_port(database_url, proxy.port),
        )
        server.wait_for_log(r"(?s)domains loaded.*domains loaded")
        assert server.process is not None
        pids = eventually(
            lambda: len(worker_pids(server.process.pid)) == 2 and worker_pids(server.process.pid)
        )
        proxy.cut()
        marks = [f"held-{n}" for n in range(30)]  # one connection each: both workers hold some
        assert all(send(server.port, mark)[0] == 250 for mark in marks)
        os.kill(pids[1], signal.SIGTERM)  # it spools what it holds, exits, is restarted
        server.wait_for_log(r"spooled [1-9]\d* messages")  # 30 connections: it held some
        server.wait_for_log(r"worker 1 exited with 0; restarting")
        server.wait_for_log(r"(?s)(listening on.*){3}")  # the new worker 1 is up
        proxy.restore()  # worker 0 writes what it holds; worker 1 replays its spool
        eventually(lambda: subjects(database_url) == sorted(marks))
        eventually(lambda: not list((tmp_path / "spool").glob("**/pending/*.msg")))
        assert server.stop() == 0
    finally:
        proxy.stop()


def test_spool_files_outlive_a_change_of_workers(make_server, database_url, tmp_path):
    """Spooled by two workers, replayed by the single process that follows."""
    proxy, url, marks = spool_with_two_workers(make_server, database_url)
    try:
        spooled = sum(s.counts()[0] for s in Spool.family(tmp_path / "spool"))
        assert spooled == len(marks)
        proxy.restore()
        single = make_server(database_url=url)
        eventually(lambda: subjects(database_url) == sorted(marks))
        assert re.search(r"took over \d+ spool files from .*worker-0", single.log)
        assert not list((tmp_path / "spool").glob("worker-*/pending/*.msg"))
    finally:
        proxy.stop()
