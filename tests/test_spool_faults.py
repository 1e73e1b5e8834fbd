"""Per-worker spools that cannot be taken over or written.

Found in review:
1. Service.prepare_database adopts the orphans before it replays anything,
   inside the "prepare-db" side task, and Spool.adopt lets an OSError out.
   One orphan directory that cannot be emptied (left by a run as another
   user, on another file system, immutable...) ends that task: no spool
   file is replayed at all, not the process's own nor the ones already
   moved, and nothing is logged (the task's exception is only collected at
   shutdown). The service keeps taking mail and looks healthy while mail it
   acknowledged with 250 waits on disk until some later restart.
2. `check` probes only SPOOL_DIR itself for writability; a worker-N spool
   that cannot take a file gets no line at all (it has no files), though
   that worker refuses to start (service.check_spool) and the supervisor
   restarts it in a loop.

The unwritable directory is made with `chattr +i` (the tests run as root,
which no mode bits stop); EACCES for a service user is the common case.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

from app.spool import Spool

from .helpers import app_command, eventually
from .test_promises import send, subjects
from .test_workers import spool_with_two_workers


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def marks_in(directory: Path) -> list[str]:
    found = []
    for _, envelope in Spool(directory.parent).pending():  # a file may hold many
        match = re.search(rb"Subject: (held-\d+)", envelope.raw)
        assert match is not None
        found.append(match[1].decode())
    return sorted(found)


def test_one_unadoptable_orphan_does_not_stop_the_replay(make_server, database_url, tmp_path):
    spool = tmp_path / "spool"
    proxy, url, marks = spool_with_two_workers(make_server, database_url)
    try:
        adoptable = marks_in(spool / "worker-0" / "pending")
        stuck = marks_in(spool / "worker-1" / "pending")
        assert adoptable and stuck and sorted(adoptable + stuck) == sorted(marks)
        proxy.restore()
        with immutable(spool / "worker-1" / "pending"):
            single = make_server(database_url=url)  # WORKERS=1: takes over worker-0 and -1
            assert send(single.port, "fresh")[0] == 250
            eventually(lambda: "fresh" in subjects(database_url))
            try:
                # What it could take over (worker-0's files, now in its own spool) is
                # replayed, and what it could not is named in the log.
                eventually(lambda: set(adoptable) <= set(subjects(database_url)), timeout=20)
            finally:
                print(single.log)
                print("stored:", subjects(database_url))
            assert re.search(r"worker-1", single.log)
    finally:
        proxy.stop()


def test_check_reports_a_worker_spool_that_cannot_take_files(make_server, database_url, tmp_path):
    spool = tmp_path / "spool"
    pending = spool / "worker-1" / "pending"
    pending.mkdir(parents=True)
    with immutable(pending):
        server = make_server(workers="2")
        server.wait_for_log(r"worker 1 exited with 1; restarting")  # it cannot start
        server.kill()
        assert app_command("init-db", DATABASE_URL=database_url).returncode == 0
        check = app_command("check", DATABASE_URL=database_url, SPOOL_DIR=str(spool), WORKERS="2")
    print(check.stdout)
    errors = [line for line in check.stdout.splitlines() if line.startswith("error:")]
    assert any("worker-1" in line for line in errors), (
        f"check (exit {check.returncode}) says nothing about {pending}: {errors}"
    )
