"""Installing and upgrading the schema never queues the website's readers.

A reader blocked behind our DDL is what an operator sees as the website
hanging: PostgreSQL queues every later lock request behind a waiting
ACCESS EXCLUSIVE one. So: no DDL at all when the schema is current, and a
short lock_timeout with retries when there is some to do.

The tests measure what a reader spends waiting for a lock (pg_stat_activity,
tests/probes.py), not how long its reads take: a busy machine slows every
read without any lock held, and is no fault of the schema switch.
"""

from __future__ import annotations

import asyncio
import smtplib
import subprocess
import sys
import threading

import asyncpg
import pytest

from app import db_schema

from . import cybertemp
from .cybertemp import PUBLIC, app, clean_env, count
from .helpers import (
    ROOT,
    AppProcess,
    create_database,
    drop_database,
    eventually,
    query,
    url_for,
)
from .probes import LockWatch, ProbeThread

# The newest migration: the schema version a fresh install reports (011: who
# made each of the API's accounts).
LATEST = db_schema.migrations()[-1][0]

# The website's read of a mailbox (the parameter inlined: probes run plain statements).
WEBSITE_READ = (
    "SELECT id, subject, from_addr, created_at FROM emails "
    f"WHERE mailbox_owner = '{PUBLIC}' ORDER BY created_at DESC LIMIT 20"
)
# The longest a website read may wait for a lock: one attempt of ours under
# db.LOCK_TIMEOUT (100 ms) queues readers that long, no more. A wait behind
# the slow report, or behind DDL holding emails, is seconds.
WORST_WAIT = 0.5


class Website:
    """The website: a mailbox read in a loop on a few connections of its own
    (tests/probes.py), and the time its reads spend waiting for a lock, read
    from pg_stat_activity. That wait is what our DDL would cause; a busy
    machine slows reads but never makes them wait for a lock."""

    def __init__(self, url: str, connections: int = 3) -> None:
        self.url = url
        self.readers = [ProbeThread(url, WEBSITE_READ) for _ in range(connections)]
        self.watch: LockWatch | None = None

    def __enter__(self) -> Website:
        for reader in self.readers:
            reader.start()
        eventually(lambda: all(reader.probe.count >= 20 for reader in self.readers))
        self._watch()
        return self

    def __exit__(self, *exc: object) -> None:
        for reader in self.readers:
            reader.stop()
        if self.watch is not None:
            self.watch.stop()

    def _watch(self) -> None:
        self.watch = LockWatch(self.url, [reader.probe for reader in self.readers])
        self.watch.start()

    @property
    def reads(self) -> int:
        return sum(reader.probe.count for reader in self.readers)

    def phase(self) -> float:
        """The longest any one read waited for a lock since the last call; starts anew."""
        assert self.watch is not None
        self.watch.stop()
        longest = max(self.watch.longest.values())
        self._watch()
        return longest

    def keeps_reading(self, reads: int = 10) -> None:
        """Wait until every reader has finished `reads` more reads."""
        counts = [reader.probe.count for reader in self.readers]
        eventually(
            lambda: all(
                r.probe.count >= n + reads for r, n in zip(self.readers, counts, strict=True)
            )
        )


class InitDb(AppProcess):
    """`python -m app init-db` running beside the test, its log read as it comes."""

    command = "init-db"


SAFETY_SECONDS = 120


class Holder(threading.Thread):
    """A website transaction that has read `emails` and stays open (a slow report,
    or a connection left idle in transaction) until released (or after
    SAFETY_SECONDS: a failed test must not leave it open)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.holding = threading.Event()
        self.release = threading.Event()

    def run(self) -> None:
        async def hold() -> None:
            conn = await asyncpg.connect(self.url)
            async with conn.transaction():
                await conn.fetchval("SELECT count(*) FROM emails")
                self.holding.set()
                await asyncio.to_thread(self.release.wait, SAFETY_SECONDS)
            await conn.close()

        asyncio.run(hold())

    def __enter__(self) -> Holder:
        self.start()
        assert self.holding.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.join(10)


@pytest.mark.parametrize("command", ["init-db", "serve"])
def test_start_on_an_installed_database_never_queues_readers(
    database_url, tmp_path, quiet_dns, command
):
    """A reader holding a long transaction on emails while the service or init-db
    starts on an installed database: neither waits for it, nor queues readers
    for longer than one attempt under db.LOCK_TIMEOUT."""
    assert app("init-db", database_url=database_url).returncode == 0
    query(
        database_url,
        "INSERT INTO emails (mailbox_owner, subject, body, from_addr) "
        "SELECT $1, 's', '', '' FROM generate_series(1, 50)",
        PUBLIC,
    )
    with Website(database_url) as website:
        with Holder(database_url):
            if command == "init-db":
                result = app("init-db", database_url=database_url, timeout=30)
                assert result.returncode == 0, result.stderr
                assert "[schema]" not in result.stderr  # no DDL: nothing changed
            else:
                server = cybertemp.server(database_url, tmp_path / "spool", quiet_dns.address)
                server.start(ready=r"\[lists\] domains loaded", timeout=20)
                assert server.stop() == 0
            waited = website.phase()
    print(
        f"{command} on an installed database: of {website.reads} reads the longest "
        f"waited {waited * 1000:.0f} ms for a lock"
    )
    assert waited < WORST_WAIT


def test_website_reads_never_stall_during_the_switch(database_url, tmp_path, quiet_dns):
    """The README's checklist (init-db, then serve) on a busy Cybertemp database, with
    a website reading all along and one slow report holding emails during init-db.

    What must not happen is a read waiting for a lock we hold or queue for:
    each of init-db's attempts behind the slow report queues readers for at
    most db.LOCK_TIMEOUT, and the website goes on reading between attempts
    (the report stays open until it has)."""
    old_rows = cybertemp.build(database_url, rows_per_owner=20_000)
    with Website(database_url) as website:
        with Holder(database_url):  # init-db starts while it runs
            init = InitDb(clean_env(database_url=database_url))
            init.launch()
            init.wait_for_log(r"install the schema: a table is busy")
            website.keeps_reading()  # while init-db retries behind the report
        assert init.process is not None and init.process.wait(120) == 0, init.log
        init.close()
        during_init = website.phase()

        # Mail of ours from three days ago: the second retention run deletes it.
        query(
            database_url,
            "WITH raw AS (INSERT INTO raw_messages (id, raw, received_at) SELECT "
            "gen_random_uuid(), 'x', now() - interval '3 days' FROM generate_series(1, 5000) "
            "RETURNING id, received_at) INSERT INTO emails (mailbox_owner, subject, body, "
            "from_addr, raw_id, received_at) SELECT $1, 'ours', '', '', id, received_at FROM raw",
            PUBLIC,
        )
        server = cybertemp.server(
            database_url,
            tmp_path / "spool",
            quiet_dns.address,
            retention_hours="24",
            retention_interval="0.5",
        ).start()
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
            for n in range(20):
                client.sendmail("a@sender.test", [PUBLIC], f"Subject: {n}\r\n\r\nx\r\n".encode())
        server.wait_for_log(r"first run on this database, nothing deleted")
        server.wait_for_log(r"\[retention\] expired 5000 emails rows and 5000 raw messages")
        assert server.stop() == 0
        during_serve = website.phase()
    print(
        f"website reads ({website.reads}), the longest wait for a lock: during init-db "
        f"{during_init * 1000:.0f} ms, during serve {during_serve * 1000:.0f} ms"
    )
    assert count(database_url, "SELECT count(*) FROM emails WHERE received_at IS NULL") == old_rows
    assert during_init < WORST_WAIT and during_serve < WORST_WAIT


# The schema of the previous release: plain tables, then its migration 002
# converted them into partitioned copies with a MINVALUE ("legacy") partition.
PREVIOUS_RELEASE = """
CREATE TABLE raw_messages (id uuid PRIMARY KEY, raw bytea NOT NULL,
                           received_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE emails (id uuid NOT NULL DEFAULT gen_random_uuid(), mailbox_owner text NOT NULL,
    mailbox text DEFAULT 'INBOX', subject text NOT NULL DEFAULT '', body text NOT NULL DEFAULT '',
    html text, from_addr text NOT NULL DEFAULT '', to_addrs text[],
    "timestamp" timestamptz DEFAULT now(), flags text[] DEFAULT '{}', size bigint,
    created_at timestamptz DEFAULT now(), encrypted boolean DEFAULT false, key_version int,
    received_at timestamptz NOT NULL DEFAULT now(), auth_results text, spf text, dkim text,
    dmarc text, dmarc_domain text, message_id text, header_from text, attachments jsonb,
    remote_ip inet, helo text, raw_id uuid, tls boolean, PRIMARY KEY (id, received_at))
    PARTITION BY RANGE (received_at);
CREATE TABLE emails_legacy PARTITION OF emails
    FOR VALUES FROM (MINVALUE) TO (now() - interval '40 hours');
CREATE TABLE emails_default PARTITION OF emails DEFAULT;
CREATE INDEX emails_owner_received_idx ON emails (mailbox_owner, received_at DESC);
CREATE INDEX emails_raw_id_idx ON emails (raw_id);
CREATE TABLE inbox (id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email_address text UNIQUE NOT NULL, user_id uuid, fingerprint text,
    created_at timestamptz DEFAULT now());
CREATE TABLE domains (domain text UNIQUE NOT NULL, active boolean DEFAULT true);
CREATE TABLE bans (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, scope text NOT NULL,
    value text NOT NULL, match_type text NOT NULL DEFAULT 'exact',
    status text NOT NULL DEFAULT 'active', created_at timestamptz DEFAULT now());
CREATE TABLE private_email (email text NOT NULL, last_updated_at timestamptz);
CREATE INDEX private_email_lower_idx ON private_email (lower(email));
CREATE TABLE schema_migrations (version int PRIMARY KEY, name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now());
INSERT INTO schema_migrations (version, name)
    VALUES (1, 'schema.sql'), (2, '002_partition_by_received_at.sql');
INSERT INTO emails (mailbox_owner, received_at) SELECT 'old@example.com', now() - interval '2 days'
    FROM generate_series(1, 100);
"""


def test_a_database_of_the_previous_release_gets_the_new_listing_index(database_url, tmp_path):
    for statement in PREVIOUS_RELEASE.strip().split(";\n"):
        query(database_url, statement)
    result = app("init-db", database_url=database_url)
    assert result.returncode == 0, result.stderr
    assert "added columns header_to" in result.stderr
    assert "dropped index emails_owner_received_idx" in result.stderr
    indexes = query(
        database_url,
        "SELECT c.relname, x.indisvalid FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid "
        "WHERE x.indrelid = 'emails'::regclass ORDER BY 1",
    )
    assert [tuple(r) for r in indexes] == [
        ("emails_owner_recent_idx", True),
        ("emails_pkey", True),
        ("emails_raw_id_idx", True),
    ]
    attached = query(
        database_url,
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'emails_owner_recent_idx'::regclass",
    )
    assert attached == [(2,)]  # the legacy and default partitions each have theirs
    assert count(database_url, "SELECT count(*) FROM emails_legacy") == 100
    check = app("check", database_url=database_url, spool_dir=str(tmp_path))
    assert f"ok:    schema version {LATEST} (this release: {LATEST})" in check.stdout
    assert "ok:    emails: 100 rows stored before the upgrade" in check.stdout
    again = app("init-db", database_url=database_url)
    assert again.returncode == 0 and "[schema]" not in again.stderr


def test_serve_waits_for_a_busy_table_without_blocking_readers(database_url, tmp_path, quiet_dns):
    """The first start on a Cybertemp database (no init-db) behind a long
    transaction: it retries under lock_timeout, readers go on, and once the
    transaction ends it installs and takes mail."""
    cybertemp.build(database_url, rows_per_owner=50)
    with Website(database_url) as website:
        with Holder(database_url):
            server = cybertemp.server(database_url, tmp_path / "spool", quiet_dns.address)
            server.start(ready=r"install the schema: a table is busy")
            website.keeps_reading()  # while serve retries behind the transaction
        server.wait_for_log(r"\[smtp\] listening on")
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
            client.sendmail("a@sender.test", [PUBLIC], b"Subject: after\r\n\r\nx\r\n")
        assert server.stop() == 0
        waited = website.phase()
    print(
        f"serve behind a busy emails table: of {website.reads} reads the longest waited "
        f"{waited * 1000:.0f} ms for a lock"
    )
    assert waited < WORST_WAIT
    assert count(database_url, "SELECT count(*) FROM emails WHERE subject = 'after'") == 1


def test_init_db_gives_up_on_a_table_that_stays_busy(database_url):
    """Bounded: with a table busy for longer than its patience, init-db says who holds it."""
    cybertemp.build(database_url, rows_per_owner=1)
    with Holder(database_url):
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                "import asyncio, logging; from app import db, db_schema\n"
                "logging.basicConfig(level='INFO')\n"
                "async def go():\n"
                f"    conn = await db.connect({database_url!r})\n"
                "    await db_schema.install_schema(conn, patience=1)\n"
                "asyncio.run(go())",
            ],
            cwd=ROOT,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode != 0
    assert "LockNotAvailableError" in result.stderr
    assert "a table is busy (pid" in result.stderr and "idle in transaction" in result.stderr


def test_an_upgraded_cybertemp_emails_has_every_column_of_a_fresh_one(database_url):
    """schema.sql's CREATE TABLE and db_schema.EMAIL_COLUMNS must not drift apart."""
    cybertemp.build(database_url, rows_per_owner=1)
    fresh = url_for(create_database())
    try:
        for url in (database_url, fresh):
            assert app("init-db", database_url=url).returncode == 0

        def columns(url: str) -> dict[str, str]:
            rows = query(
                url,
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 'emails'::regclass AND attnum > 0 AND NOT attisdropped",
            )
            return dict(rows)

        assert columns(database_url) == columns(fresh)
    finally:
        drop_database(fresh.rsplit("/", 1)[1])


def test_every_column_the_writer_fills_is_one_init_db_adds():
    """db_batch.EMAIL_COLUMNS (the INSERT) and db_schema's lists (the upgrade) name the same
    columns."""
    from app import db_batch, db_schema

    written = {column.name for column in db_batch.EMAIL_COLUMNS}
    assert written == {*db_schema.EMAIL_BASE_COLUMNS, *db_schema.EMAIL_COLUMNS}
