"""Review (issue 21 item 11): the database's disk is full (SQLSTATE 53100).

Measured with PostgreSQL's tablespace full: acknowledged mail was kept and
new mail refused, but the reply said `451 4.3.0 Mail queue full` and the
log `database unreachable`. Now new mail gets `452 4.3.1 Mail store full`,
/readyz and `check` name the cause, a metric counts it, the heartbeat stops
while it lasts, and mail flows again once there is room, nothing
acknowledged lost.

The test mounts a small tmpfs as a PostgreSQL tablespace (root only), makes
it the default tablespace of the test database, and fills it through the
real server; then it remounts the tmpfs bigger.
"""

from __future__ import annotations

import base64
import os
import pwd
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import (
    ADMIN_URL,
    app_command,
    drop_database,
    eventually,
    free_port,
    install_schema,
    query,
    url_for,
)
from .netfakes import Monitor
from .test_metrics import get, samples
from .test_promises import send, subjects

TABLESPACE_SIZE = "20M"  # the template database takes 7.5 MB of it
BODY = 256 * 1024  # bytes of incompressible text per message


def local_postgres_user() -> pwd.struct_passwd | None:
    """The OS user of a PostgreSQL running on this machine, if we can tell."""
    try:
        user = pwd.getpwnam("postgres")
        data = query(ADMIN_URL, "SHOW data_directory")[0][0]
    except (KeyError, OSError):
        return None
    return user if os.path.isdir(data) and os.stat(data).st_uid == user.pw_uid else None


@pytest.fixture
def small_store() -> Iterator[tuple[str, Path]]:
    """A database whose default tablespace is a TABLESPACE_SIZE tmpfs: (url, mount)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: mounts a tmpfs for a PostgreSQL tablespace")
    user = local_postgres_user()
    if user is None:
        pytest.skip("needs PostgreSQL on this machine, running as the postgres user")
    mount = Path(tempfile.mkdtemp(prefix="tempmail-tablespace-"))
    mount.chmod(0o755)
    name = uuid.uuid4().hex[:10]
    size = f"size={TABLESPACE_SIZE}"
    subprocess.run(["mount", "-t", "tmpfs", "-o", size, "tablespace", mount], check=True)
    try:
        os.chown(mount, user.pw_uid, user.pw_gid)
        query(ADMIN_URL, f"CREATE TABLESPACE ts_{name} LOCATION '{mount}'")
        try:
            query(ADMIN_URL, f"CREATE DATABASE t_{name} TABLESPACE ts_{name}")
            try:
                yield url_for(f"t_{name}"), mount
            finally:
                drop_database(f"t_{name}")
        finally:
            query(ADMIN_URL, f"DROP TABLESPACE IF EXISTS ts_{name}")
    finally:
        subprocess.run(["umount", mount], check=False)
        mount.rmdir()


def send_big(port: int, subject: str) -> tuple[int, bytes]:
    """`send` with BODY bytes of random base64 text (after an empty line)."""
    return send(port, f"{subject}\r\n\r\n{base64.encodebytes(os.urandom(BODY * 3 // 4)).decode()}")


def test_a_full_database_disk_says_so_and_recovers(make_server, small_store, tmp_path):
    url, mount = small_store
    install_schema(url, ("example.com",))
    monitor, metrics = Monitor(), free_port()
    server = make_server(
        database_url=url,
        ack_mode="durable",
        durable_timeout="5",
        metrics_port=str(metrics),
        heartbeat_url=monitor.url,
        heartbeat_interval="0.1",
    )
    try:
        eventually(lambda: monitor.hits > 0)  # healthy: pinging
        replies: dict[str, tuple[int, bytes]] = {}
        for n in range(400):
            replies[f"big-{n}"] = send_big(server.port, f"big-{n}")
            if replies[f"big-{n}"][0] != 250:
                break
        code, text = send(server.port, "while full")
        assert (code, text) == (452, b"4.3.1 Mail store full - please retry later")
        status, body = get(metrics, "/readyz")
        assert status == 503 and b"mail store full" in body and b"53100" in body, body
        assert samples(metrics)["tempmail_store_full_total"] > 0
        server.wait_for_log(r"\[heartbeat\] unhealthy, not pinging: mail store full")
        pings = monitor.hits
        check = app_command("check", DATABASE_URL=url, SPOOL_DIR=str(tmp_path / "spool"))
        assert check.returncode == 1
        assert "error: mail store full: DiskFullError (53100)" in check.stdout, check.stdout
        assert monitor.hits == pings  # no ping while the store is full

        subprocess.run(["mount", "-o", "remount,size=64M", mount], check=True)
        eventually(lambda: send(server.port, "after")[0] == 250, timeout=60)
        assert get(metrics, "/readyz")[0] == 200
        eventually(lambda: monitor.hits > pings)  # the heartbeat is back
    finally:
        monitor.stop()
    acknowledged = {s for s, (code, _) in replies.items() if code == 250}
    stored = set(subjects(url))
    assert len(acknowledged) > 5 and acknowledged <= stored, (len(acknowledged), len(stored))
    assert stored - acknowledged <= {"after"}  # nothing refused was kept
