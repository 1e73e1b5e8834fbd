"""Several hosts on one database: `init-db` run by all of them at once
installs the schema once and whole; retention and partition upkeep run on
one host at a time (the advisory lock, seen in pg_locks across processes);
each host says which it is (the start line, /metrics, `check`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import asyncpg
import pytest

from app import db_retention_locks, db_schema

from .helpers import (
    ROOT,
    Server,
    app_command,
    clean_environment,
    db_address,
    eventually,
    free_port,
    query,
    with_port,
)
from .netfakes import TCPProxy
from .pgbouncer import running

HOSTS = ("mx-a", "mx-b", "mx-c")


class Gate(TCPProxy):
    """A proxy to the database that lets no connection through until `count`
    clients are waiting in its queue (or `patience` seconds passed since the
    first): then all of them at once, so their first statements race."""

    def __init__(self, target: tuple[str, int], count: int, patience: float = 3.0) -> None:
        self.count, self.patience = count, patience
        super().__init__(target)

    def waiting(self) -> int:
        """Connections made to the listener and not accepted yet (/proc/net/tcp)."""
        port = f":{self.port:04X}"
        rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
        return sum(1 for row in rows if row[1].endswith(port) and row[3] == "01")

    def _accept(self) -> None:
        first = None
        while self.running and self.waiting() < self.count:
            if first is None and self.waiting():
                first = time.monotonic()
            if first is not None and time.monotonic() - first > self.patience:
                break
            time.sleep(0.01)
        super()._accept()


def init_db_at_once(database_url: str, hosts: tuple[str, ...]) -> list[tuple[int, str]]:
    """`init-db` started by every host at the same moment: (exit code, output) each."""
    started = [
        subprocess.Popen(
            [sys.executable, "-m", "app", "--env-file", "/dev/null", "init-db"],
            cwd=ROOT,
            env={**clean_environment(), "DATABASE_URL": database_url, "HOST_NAME": host},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for host in hosts
    ]
    results = []
    try:
        for process in started:
            output, _ = process.communicate(timeout=120)
            results.append((process.returncode, output))
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()
    return results


def test_init_db_by_three_hosts_at_once_installs_the_schema_once(database_url):
    gate = Gate(db_address(database_url), len(HOSTS))
    try:
        results = init_db_at_once(with_port(database_url, gate.port), HOSTS)
    finally:
        gate.stop()
    assert [code for code, _ in results] == [0, 0, 0], results
    applied = query(database_url, "SELECT version, count(*) AS n FROM schema_migrations GROUP BY 1")
    assert sorted(r["version"] for r in applied) == [v for v, _, _ in db_schema.migrations()]
    assert all(r["n"] == 1 for r in applied)
    checksum = query(database_url, "SELECT checksum FROM schema_migrations WHERE version = 1")
    assert checksum[0]["checksum"] == db_schema.checksum()  # indexes built, the install finished
    for table, name, _, plain_only in db_schema.INDEXES:
        kind = query(
            database_url,
            "SELECT relkind::text AS k FROM pg_class WHERE oid = to_regclass($1)",
            table,
        )[0]["k"]
        if kind == "r" or not plain_only:
            valid = query(
                database_url,
                "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)",
                name,
            )
            assert valid and valid[0]["indisvalid"], (name, results)
    # A fourth start finds it current: nothing to do, and `check` agrees.
    again = app_command("check", DATABASE_URL=database_url, HOST_NAME="mx-d")
    assert re.search(r"ok: +schema version \d+ \(this release", again.stdout), again.stdout


def lockers(database_url: str, condition: str, argument: object) -> list[str]:
    """application_name of each backend of this database with a pg_locks row
    `l` meeting `condition` ($1 is `argument`)."""
    rows = query(
        database_url,
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        f"WHERE {condition} "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        argument,
    )
    return [r["application_name"] for r in rows]


def holders(database_url: str, key: int) -> list[str]:
    """application_name of each backend holding advisory lock `key`."""
    return lockers(database_url, "l.locktype = 'advisory' AND l.objid = $1 AND l.granted", key)


def waiting_on(database_url: str, table: str) -> list[str]:
    """application_name of each backend waiting for a lock on `table`."""
    return lockers(database_url, "l.relation = to_regclass($1) AND NOT l.granted", table)


@pytest.mark.parametrize("setup", ["direct", "pgbouncer"])
def test_retention_runs_on_one_host_at_a_time(setup, database_url, make_server, tmp_path):
    """Two hosts run upkeep every 0.2 s. The test holds retention_state, which
    a run reads once it holds the run lock: the first host to get there waits
    inside its run; the other, for as long as that lasts, skips its own runs
    and never reaches the table. Released, the runs go on, one at a time.
    Also through PgBouncer in transaction mode without DATABASE_DIRECT_URL:
    the lock is a transaction's, which a pooler keeps on one server."""
    with contextlib.ExitStack() as stack:
        reach = {"database_url": database_url}
        if setup == "pgbouncer":
            bouncer = stack.enter_context(running(tmp_path))
            reach = {"database_url": bouncer.url(database_url), "database_pooled": "true"}
        servers = {
            host: make_server(
                host_name=host,
                spool_dir=str(tmp_path / host),
                retention_hours="24",
                retention_interval="0.2",
                log_level="debug",
                **reach,
            )
            for host in HOSTS[:2]
        }
        one_at_a_time(database_url, servers, named=setup == "direct")
        for server in servers.values():
            server.kill()  # before PgBouncer stops


SKIPPED = "another run is under way"


def skipping(servers: dict[str, Server], before: dict[str, int]) -> str | None:
    """The host that skipped at least 3 runs since `before` (its counts), if any."""
    return next((h for h, s in servers.items() if s.log.count(SKIPPED) >= before[h] + 3), None)


def one_at_a_time(database_url: str, servers: dict[str, Server], named: bool) -> None:
    loop = asyncio.new_event_loop()  # the test's own session, holding the table
    conn = loop.run_until_complete(asyncpg.connect(database_url))
    try:
        loop.run_until_complete(conn.execute("BEGIN"))
        loop.run_until_complete(conn.execute("LOCK TABLE retention_state IN ACCESS EXCLUSIVE MODE"))
        runner = eventually(lambda: waiting_on(database_url, "retention_state"), 60)
        assert len(runner) == 1, runner
        holder = holders(database_url, db_retention_locks.RUN_LOCK)
        assert len(holder) == 1, holder
        skips = {host: server.log.count(SKIPPED) for host, server in servers.items()}
        # Several runs of the other host come and go, all skipped; none of the
        # host inside its run (its next run waits for this one to end).
        other = eventually(lambda: skipping(servers, skips), 60)
        blocked = next(host for host in servers if host != other)
        assert servers[blocked].log.count(SKIPPED) == skips[blocked]
        assert len(waiting_on(database_url, "retention_state")) == 1
        assert holders(database_url, db_retention_locks.RUN_LOCK) == holder
        if named:  # through PgBouncer a server's application_name is another client's, or none
            assert holder == [f"tempmail {blocked}"]
        loop.run_until_complete(conn.execute("COMMIT"))
    finally:
        loop.run_until_complete(conn.close())
        loop.close()
    # Released: the first run on this database reports once, whoever runs it.
    eventually(lambda: query(database_url, "SELECT count(*) AS n FROM retention_state")[0]["n"])
    firsts = sum(s.log.count("first run on this database") for s in servers.values())
    assert firsts == 1, [s.log for s in servers.values()]


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        return answer.read().decode()


def test_each_host_says_which_it_is(database_url, make_server, tmp_path):
    port = free_port()
    server: Server = make_server(host_name="mx-east-1", metrics_port=str(port))
    assert "(host mx-east-1)" in server.log
    assert 'tempmail_host_info{host="mx-east-1"} 1.0' in metrics_text(port)
    checked = app_command("check", DATABASE_URL=database_url, HOST_NAME="mx-east-1")
    assert "this is host mx-east-1 (HOST_NAME)" in checked.stdout, checked.stdout
    rows = query(
        database_url,
        "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'tempmail mx-east-1' "
        "AND datname = current_database()",
    )
    assert rows[0]["n"] >= 1  # its connections name it too
