"""Operating it: `check`, retention while serving, the systemd unit, zero setup.

Switching from Cybertemp has its own file: test_cybertemp.py.
"""

from __future__ import annotations

import re
import shutil
import smtplib
import subprocess
import time

import pytest

from app import config, db_schema

from .helpers import ROOT, app_command, eventually, query
from .probes import ProbeThread
from .test_tls import make_certificate

# The newest migration: the schema version a fresh install reports (011: who
# made each of the API's accounts).
LATEST = db_schema.migrations()[-1][0]


def test_check_reports_settings_schema_and_certificate(database_url, tmp_path):
    cert, key = make_certificate(tmp_path, "check.test")
    secret_url = database_url.replace("postgres@", "postgres:hunter2@") + "?password=hunter3"
    query(database_url, "SELECT 1")
    app_command("init-db", DATABASE_URL=database_url)
    result = app_command(
        "check",
        DATABASE_URL=secret_url,
        SUPABASE_KEY="sekrit-key-123",
        HEARTBEAT_URL="https://hc-ping.example/4f1c2b9e-token?key=k3y",
        TLS_CERT=cert,
        TLS_KEY=key,
        SPOOL_DIR=str(tmp_path / "spool"),
    )
    for secret in ("hunter2", "hunter3", "sekrit-key-123", "4f1c2b9e-token", "k3y"):
        assert secret not in result.stdout, secret
    assert re.search(r"DATABASE_URL=postgresql://\*\*\*@.*\?password=\*\*\*", result.stdout)
    assert "HEARTBEAT_URL=https://hc-ping.example/***?key=***" in result.stdout
    assert "settings read from the environment, then /dev/null" in result.stdout
    assert "ok:    database reachable at 127.0.0.1:" in result.stdout
    assert f"ok:    schema version {LATEST} (this release: {LATEST})" in result.stdout
    assert re.search(
        r"error: TLS certificate .* expires \d{4}-\d\d-\d\d \(\d days\)", result.stdout
    )  # a 3-day certificate: renew soon
    assert "ok:    postgres domains: 0 rows" in result.stdout
    assert result.returncode == 1


def test_check_fails_on_unreachable_database(tmp_path):
    result = app_command(
        "check", DATABASE_URL="postgresql://postgres@127.0.0.1:1/x", SPOOL_DIR=str(tmp_path)
    )
    assert result.returncode == 1
    assert "error: DATABASE_URL=postgresql://***@127.0.0.1:1/x: cannot connect" in result.stdout


UNIT = ROOT / "deploy" / "systemd" / "tempmail-smtp.service"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_unit_verifies_and_is_hardened(tmp_path):
    text = UNIT.read_text()
    for line in (
        "User=tempmail",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "ReadWritePaths=/var/spool/tempmail-smtp",
        "Restart=on-failure",
        "EnvironmentFile=/opt/tempmail-smtp/.env",
        "LimitNOFILE=65536",
    ):
        assert re.search(rf"^{re.escape(line)}$", text, re.M), line
    stop_timeout = int(re.search(r"^TimeoutStopSec=(\d+)$", text, re.M).group(1))
    assert stop_timeout > config.load({}, env_file=None).drain_timeout + 10
    local = tmp_path / UNIT.name  # the same unit, pointed at this checkout
    local.write_text(text.replace("/opt/tempmail-smtp", str(ROOT)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def partition_names(url: str, table: str) -> set[str]:
    rows = query(
        url,
        "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = $1::regclass",
        table,
    )
    return {r[0] for r in rows}


def test_retention_drops_old_partitions_and_keeps_new(make_server, database_url):
    """Mail older than RETENTION_HOURS goes by whole partitions; inserts are not held up;
    private mail stays."""
    server = make_server(start=False, retention_hours="24", retention_interval="1.5")
    for table in ("raw_messages", "emails"):  # as the service made them two days ago
        query(
            database_url,
            f"CREATE TABLE {table}_p_old PARTITION OF {table} FOR VALUES "
            "FROM (now() - interval '49 hours') TO (now() - interval '47 hours')",
        )
    query(
        database_url,
        "INSERT INTO raw_messages (id, raw, received_at) SELECT gen_random_uuid(),"
        " 'x', now() - interval '48 hours' FROM generate_series(1, 12000)",
    )
    query(
        database_url,
        "INSERT INTO emails (mailbox_owner, subject, body, from_addr, raw_id, received_at) "
        "SELECT CASE WHEN n = 1 THEN 'keep@example.com' ELSE 'o@example.com' END, "
        "CASE WHEN n = 1 THEN 'private' ELSE 'old' END, '', '', id, received_at "
        "FROM (SELECT *, row_number() OVER () AS n FROM raw_messages) r",
    )
    query(database_url, "INSERT INTO private_email (email) VALUES ('Keep@Example.com')")
    server.start()
    server.wait_for_log(
        r"\[retention\] first run on this database, nothing deleted: "
        r"it would delete 11999 emails rows and 11999 raw messages"
    )
    probe = ProbeThread(database_url)
    probe.start()
    assert "dropped partition" not in server.log, "the probe must run while retention does"
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
        client.sendmail("a@sender.test", ["n@example.com"], b"Subject: new\r\n\r\nx\r\n")
    server.wait_for_log(r"\[retention\] dropped partition emails_p_old \(11999 rows, 1 kept\)")
    server.wait_for_log(
        r"\[retention\] dropped partition raw_messages_p_old \(11999 rows, 1 kept\)"
    )
    time.sleep(0.2)
    probe.stop()
    inserts, worst = probe.probe.count, probe.probe.worst
    print(f"retention: {inserts} probe inserts, slowest {worst * 1000:.1f} ms")
    assert inserts > 100
    assert worst < 0.25, f"an insert waited {worst * 1000:.0f} ms during retention"
    subjects = query(database_url, "SELECT DISTINCT subject FROM emails ORDER BY 1")
    assert subjects == [("new",), ("private",), ("probe",)]
    assert query(database_url, "SELECT count(*) FROM raw_messages")[0][0] == 2
    # The coming hours are covered by range partitions, the same for both tables.
    names = partition_names(database_url, "emails")
    assert "emails_p_old" not in names and len(names) >= 7, names
    assert {n.replace("emails", "raw_messages") for n in names} == partition_names(
        database_url, "raw_messages"
    )
    # Only the kept private rows are outside the range partitions.
    assert query(database_url, "SELECT subject FROM emails_default") == [("private",)]


def test_retention_deletes_stray_old_rows_from_the_default_partition(make_server, database_url):
    """Old mail outside every partition (a late spool replay) still expires."""
    server = make_server(retention_hours="24", retention_interval="0.3")
    query(
        database_url,
        "INSERT INTO raw_messages (id, raw, received_at) SELECT gen_random_uuid(),"
        " 'x', now() - interval '30 hours' FROM generate_series(1, 7000)",
    )
    query(
        database_url,
        "INSERT INTO emails (mailbox_owner, subject, body, from_addr, raw_id, received_at)"
        " SELECT 'o@example.com', 'stray', '', '', id, received_at FROM raw_messages",
    )
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
        client.sendmail("a@sender.test", ["n@example.com"], b"Subject: new\r\n\r\nx\r\n")
    server.wait_for_log(r"\[retention\] expired 7000 emails rows and 7000 raw messages")
    eventually(lambda: query(database_url, "SELECT subject FROM emails") == [("new",)])
    assert query(database_url, "SELECT count(*) FROM raw_messages_default")[0][0] == 0


def test_zero_setup_uses_the_embedded_postgresql(tmp_path):
    """No DATABASE_URL: serve starts pgserver under DATA_DIR, installs the schema, stores."""
    from .helpers import Server

    server = Server(
        {
            "DATA_DIR": str(tmp_path / "data"),
            "SPOOL_DIR": str(tmp_path / "spool"),
            "USE_DOMAIN_WHITELIST": "false",
        }
    )
    server.env.pop("DATABASE_URL", None)
    try:
        server.start(timeout=120)
        assert "DATABASE_URL is unset: using the embedded PostgreSQL" in server.log
        assert re.search(r"look at the tables with: psql 'postgresql://", server.log)
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
            client.sendmail("a@sender.test", ["z@zero.test"], b"Subject: zero\r\n\r\nx\r\n")
        check = app_command(
            "check", DATA_DIR=server.env["DATA_DIR"], SPOOL_DIR=server.env["SPOOL_DIR"]
        )
        assert re.search(r"ok: +embedded PostgreSQL \(DATABASE_URL unset\): psql '", check.stdout)
        assert server.stop() == 0
        assert "stopped: 1 rows written" in server.log
    finally:
        server.kill()
