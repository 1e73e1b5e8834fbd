"""DATABASE_URL through PgBouncer in transaction mode (tests/pgbouncer.py).

Everything works through it: the CLI (init-db, domains add, check), the
receiving service (many sessions at once, their batches written, the lists
reloaded) and the API, with no prepared-statement error: no statement is
cached (asyncpg's unnamed ones stay, one Sync per query). What needs a
session (LISTEN, session advisory locks) goes over DATABASE_DIRECT_URL,
and `check` warns when it is missing. A `domains add` done on one host
reaches the other, with and without a pooler.
"""

from __future__ import annotations

import concurrent.futures
import smtplib
import time
from collections.abc import Iterator

import httpx
import pytest

from app import check, config, db_connect

from .api_helpers import ApiServer, account, mail, next_event, open_stream, send, sse_events
from .helpers import app_command, eventually, query, smtp_reply
from .pgbouncer import PgBouncer, running

SENDERS = 12  # SMTP sessions at once: more clients than PgBouncer's 3 server connections
EACH = 5  # messages per session
BOX = "box{}@example.com"


def send_from(port: int, session: int) -> int:
    """One SMTP session sending EACH messages to two recipients; 250s counted."""
    accepted = 0
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("client.test")
        for n in range(EACH):
            rcpts = [BOX.format(session), BOX.format("all")]
            client.sendmail("alice@sender.test", rcpts, mail(rcpts[0], subject=f"s{session}-{n}"))
            accepted += 1
    return accepted


@pytest.fixture
def pgbouncer(tmp_path) -> Iterator[PgBouncer]:
    with running(tmp_path) as bouncer:
        yield bouncer


def no_statement_errors(log: str) -> None:
    assert "prepared statement" not in log, log
    assert "InvalidSQLStatementName" not in log and "DuplicatePreparedStatement" not in log, log


def api_works(api: ApiServer, smtp_port: int) -> None:
    """Lists and reads through the API, then a live event: the writer's NOTIFY
    commits through the pooler, the API hears it on its LISTEN (direct URL)."""
    listed = httpx.get(f"{api.url}/mailpit/{BOX.format('all')}/api/v1/messages", timeout=30)
    assert listed.status_code == 200 and listed.json()["total"] == SENDERS * EACH
    for n in range(SENDERS):  # one read per box, each a turn on PgBouncer's connections
        box = httpx.get(f"{api.url}/mailpit/{BOX.format(n)}/api/v1/messages", timeout=30)
        assert box.json()["total"] == EACH
    with httpx.Client(base_url=api.url, timeout=30) as client:
        live_id, token = account(client, "live@example.com")
        with open_stream(client, f"/accounts/{live_id}", token) as response:
            send(smtp_port, ["live@example.com"], mail("live@example.com", subject="live"))
            assert next_event(sse_events(response))["data"]["subject"] == "live"


def test_everything_works_through_pgbouncer_in_transaction_mode(
    database_url,
    pgbouncer,
    make_server,
    tmp_path,
):
    pooled = pgbouncer.url(database_url)
    env = {"DATABASE_URL": pooled, "DATABASE_POOLED": "true", "SPOOL_DIR": str(tmp_path / "cli")}
    for args in (
        ("init-db",),
        ("domains", "add", "example.com"),
        ("bans", "add", "email", "spam@sender.test"),
    ):
        done = app_command(*args, **env)
        assert done.returncode == 0, done.stdout + done.stderr
        no_statement_errors(done.stdout + done.stderr)
    checked = app_command("check", **env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    no_statement_errors(checked.stdout + checked.stderr)
    assert "a transaction-mode pooler: no statement cache" in checked.stdout, checked.stdout
    assert "warn:  DATABASE_URL=" in checked.stdout, checked.stdout  # no DATABASE_DIRECT_URL
    assert "ok:    database takes mail" in checked.stdout, checked.stdout

    server = make_server(
        domains=("example.com",),
        database_url=pooled,
        database_pooled="true",
        domains_refresh="0.5",
        batch_max="4",  # many small batches: many turns on PgBouncer's connections
    )
    assert "no LISTEN, list changes are seen at the next" in server.log
    with concurrent.futures.ThreadPoolExecutor(SENDERS) as pool:
        sent = sum(pool.map(lambda n: send_from(server.port, n), range(SENDERS)))
    assert sent == SENDERS * EACH
    rows = query(database_url, "SELECT mailbox_owner, count(*) AS n FROM emails GROUP BY 1")
    counts = {r["mailbox_owner"]: r["n"] for r in rows}
    assert counts.pop(BOX.format("all")) == SENDERS * EACH  # each stored once
    assert set(counts.values()) == {EACH} and len(counts) == SENDERS

    # The lists: a domain added through the pooler is taken at the next refresh.
    assert smtp_reply(server.port, "a@sender.test", "x@fresh.test")[0] == 550
    added = app_command("domains", "add", "fresh.test", **env)
    assert added.returncode == 0, added.stderr
    eventually(lambda: smtp_reply(server.port, "a@sender.test", "x@fresh.test")[0] == 250, 60)

    # The API through the pooler; its LISTEN over DATABASE_DIRECT_URL.
    api = ApiServer(
        pooled,
        str(tmp_path / "data"),
        database_pooled="true",
        database_direct_url=database_url,
    )
    try:
        api.start()
        api_works(api, server.port)
        no_statement_errors(api.log)
    finally:
        api.stop()
    no_statement_errors(server.log)


@pytest.mark.parametrize("setup", ["direct", "pgbouncer"])
def test_domains_add_on_one_host_reaches_every_host(
    setup,
    database_url,
    pgbouncer,
    make_server,
    tmp_path,
):
    """Two hosts on one database, lists reloaded only hourly: the NOTIFY that
    `domains add` sends (on host a) is what makes host b accept the domain."""
    if setup == "direct":
        reach = {"database_url": database_url}
    else:  # a pooler; LISTEN over the direct URL
        reach = {
            "database_url": pgbouncer.url(database_url),
            "database_pooled": "true",
            "database_direct_url": database_url,
        }
    hosts = {
        name: make_server(
            host_name=name, spool_dir=str(tmp_path / name), domains_refresh="3600", **reach
        )
        for name in ("mx-a", "mx-b")
    }
    for server in hosts.values():
        server.wait_for_log(r"domains loaded|listening on")
        assert smtp_reply(server.port, "a@sender.test", "x@new.test")[0] == 550
    env = {key.upper(): value for key, value in reach.items()}
    began = time.monotonic()
    added = app_command("domains", "add", "new.test", HOST_NAME="mx-a", **env)
    assert added.returncode == 0, added.stderr
    start = time.monotonic()
    print(f"{setup}: `domains add` ran {start - began:.3f} s (start-up included)")
    for name, server in hosts.items():
        port = server.port
        eventually(lambda: smtp_reply(port, "a@sender.test", "x@new.test")[0] == 250, 60)  # noqa: B023
        print(f"{setup}: seen by {name} {time.monotonic() - start:.3f} s after it returned")


@pytest.mark.parametrize(
    ("url", "choice", "pooled"),
    [
        ("postgresql://u:p@aws-0-eu.pooler.supabase.com:6543/postgres", "auto", True),
        ("postgresql://u:p@aws-0-eu.pooler.supabase.com:5432/postgres", "auto", False),
        ("postgresql://u@db.example.com/postgres", "auto", False),
        ("postgresql://u@127.0.0.1:6432/postgres", "auto", False),  # PgBouncer's: say so
        ("postgresql://u@127.0.0.1:6432/postgres", "true", True),
        ("postgresql://u@127.0.0.1:6543/postgres", "false", False),
        ("postgresql://u@[::1:6543/postgres", "auto", False),  # unreadable: not guessed
    ],
)
def test_which_urls_count_as_pooled(url, choice, pooled):
    assert db_connect.looks_pooled(url, choice) is pooled


def test_the_route_and_the_warning_of_check():
    pooled_url = "postgresql://u:secret@pooler.example:6543/db"
    direct_url = "postgresql://u:secret@primary.example:5432/db"
    alone = config.load({"DATABASE_URL": pooled_url, "HOST_NAME": "mx1"}, env_file=None)
    where = db_connect.route(alone, pooled_url)
    assert where.pooled and not where.has_session and where.name == "tempmail mx1"
    warning = db_connect.pooler_warning(alone)
    assert warning and "DATABASE_DIRECT_URL is empty" in warning and "secret" not in warning
    both = config.load(
        {"DATABASE_URL": pooled_url, "DATABASE_DIRECT_URL": direct_url}, env_file=None
    )
    where = db_connect.route(both, pooled_url)
    assert where.session_url == direct_url and where.has_session
    assert db_connect.pooler_warning(both) is None
    assert check.describe_route(where) == (
        " (a transaction-mode pooler: no statement cache); sessions (LISTEN, locks) at "
        "primary.example:5432"
    )
    direct = config.load({"DATABASE_URL": direct_url}, env_file=None)
    assert db_connect.route(direct, direct_url).has_session
    assert db_connect.pooler_warning(direct) is None
    assert config.load({}, env_file=None).host_name  # the machine's name by default
