"""Live lists from Supabase or PostgreSQL, over real SMTP; heartbeat; list CLI."""

from __future__ import annotations

import smtplib
import subprocess
import sys

import pytest

from .helpers import (
    ROOT,
    app_command,
    clean_environment,
    db_address,
    eventually,
    query,
    smtp_reply,
    with_port,
)
from .netfakes import Monitor, PostgREST, TCPProxy

KEY = "service-role-key-for-tests"
FAST = {"domains_refresh": "0.3", "bans_refresh": "0.3", "private_refresh": "0.3"}


def ids(prefix: str, count: int) -> list[str]:
    """`count` uuid-shaped ids, in the order PostgreSQL sorts uuids."""
    return [f"{prefix}{n:07d}-0000-4000-8000-000000000000" for n in range(count)]


@pytest.fixture
def postgrest():
    domains = [f"d{n}.test" for n in range(1998)] + ["*.wild.test", "off.test"]
    tables = {
        # Two full PostgREST pages exactly: the last request gets none.
        "domains": [
            {"id": i, "domain": d, "active": d != "off.test"}
            for i, d in zip(ids("0", 2000), domains, strict=True)
        ],
        # Past one page, the rows that matter last.
        "bans": [
            {
                "id": i,
                "scope": "email",
                "value": f"s{n}@x.test",
                "match_type": "exact",
                "status": "active",
            }
            for n, i in enumerate(ids("1", 1500))
        ]
        + [
            {
                "id": "2" + "0" * 7 + "-0000-4000-8000-000000000000",
                "scope": "sender",
                "value": "spam@bad.test",
                "match_type": None,
                "status": "active",
            },
            {
                "id": "2" + "0" * 6 + "1-0000-4000-8000-000000000000",
                "scope": "domain",
                "value": "evil.test",
                "match_type": "exact",
                "status": "active",
            },
        ],
        "private_email": [
            {"id": i, "email": f"p{n}@d1.test"} for n, i in enumerate(ids("3", 1500))
        ],
    }
    fake = PostgREST(tables, KEY)
    yield fake
    fake.stop()


def domain_requests(fake: PostgREST, table: str = "domains") -> list[str]:
    return [p for p, _, _ in fake.requests if p.startswith(f"/rest/v1/{table}?")]


def test_supabase_source_pages_in_key_order_and_matches(make_server, postgrest):
    server = make_server(
        domains=(),
        supabase_url=postgrest.url,
        supabase_key=KEY,
        domains_refresh="0.3",
        **{k: v for k, v in FAST.items() if k != "domains_refresh"},
    )
    assert smtp_reply(server.port, "a@sender.test", "x@d1997.test")[0] == 250  # second page
    assert smtp_reply(server.port, "a@sender.test", "x@d1000.test")[0] == 250
    assert smtp_reply(server.port, "a@sender.test", "x@a.b.wild.test")[0] == 250
    assert smtp_reply(server.port, "a@sender.test", "x@off.test") == (
        550,
        b"5.7.1 Domain not allowed",
    )
    assert smtp_reply(server.port, "a@sender.test", "x@d2500.test")[0] == 550
    assert smtp_reply(server.port, "s1499@x.test") == (550, b"5.7.1 Sender banned")
    assert smtp_reply(server.port, "spam@bad.test") == (550, b"5.7.1 Sender banned")  # 'sender'
    assert smtp_reply(server.port, "x@mail.evil.test") == (550, b"5.7.1 Domain banned")
    first = domain_requests(postgrest)[:3]
    assert all("select=domain%2Cactive%2Cid" in p and "order=id.asc" in p for p in first)
    assert "id=gt." not in first[0] and "id=gt.0" in first[1] and "id=gt.0" in first[2]
    assert all("offset" not in p for p in domain_requests(postgrest))
    # PostgreSQL's private_email is empty: Supabase's, past one page.
    server.wait_for_log(
        r"private_email loaded from supabase: 1500 rows "
        r"\(private_email: PostgreSQL first, then Supabase\)"
    )
    assert {(k, a) for _, k, a in postgrest.requests} == {(KEY, f"Bearer {KEY}")}
    # An edit on the website side shows after the next refresh.
    postgrest.tables["domains"].append({"id": "9", "domain": "new.test", "active": True})
    eventually(lambda: smtp_reply(server.port, "a@sender.test", "x@new.test")[0] == 250)


def test_supabase_rows_removed_between_pages_skip_no_other_row(make_server, postgrest):
    """A row deleted while the service pages must not hide the next page's first row."""
    removed = []

    def remove_first_once(table: str) -> None:
        if table == "domains" and not removed:
            removed.append(postgrest.tables["domains"].pop(0))

    postgrest.after_request = remove_first_once
    server = make_server(
        domains=(),
        supabase_url=postgrest.url,
        supabase_key=KEY,
        domains_refresh="3600",  # the first load alone must be complete
        **{k: v for k, v in FAST.items() if k != "domains_refresh"},
    )
    assert removed and smtp_reply(server.port, "a@sender.test", "x@d1000.test")[0] == 250


def test_supabase_tables_as_cybertemp_documents_them(make_server):
    """domains without `active` (and without `id`), private_email kept in PostgreSQL."""
    tables = {
        "domains": [{"domain": f"c{n}.test"} for n in range(1200)],
        "bans": [],
        "private_email": [{"id": "1", "email": "remote@c1.test"}],
    }
    columns = {"bans": ("id", "scope", "value", "match_type", "status")}
    fake = PostgREST(tables, KEY, columns)
    try:
        server = make_server(
            domains=(), supabase_url=fake.url, supabase_key=KEY, start=False, **FAST
        )
        query(
            server.env["DATABASE_URL"], "INSERT INTO private_email (email) VALUES ('local@c1.test')"
        )
        server.start()
        assert smtp_reply(server.port, "a@sender.test", "x@c1199.test")[0] == 250
        server.wait_for_log(
            r"Supabase domains: column domains\.active does not exist; "
            r"reading domain,id ordered by id"
        )
        server.wait_for_log(
            r"Supabase domains: column domains\.id does not exist; "
            r"reading domain ordered by domain"
        )
        server.wait_for_log(r"private_email loaded from postgres: 1 rows")
        assert not domain_requests(fake, "private_email")
        check = subprocess.run(
            [sys.executable, "-m", "app", "--env-file", "/dev/null", "check"],
            cwd=ROOT,
            env={
                **clean_environment(),
                "DATABASE_URL": server.env["DATABASE_URL"],
                "SUPABASE_URL": fake.url,
                "SUPABASE_KEY": KEY,
                "SPOOL_DIR": server.env["SPOOL_DIR"],
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (
            "ok:    postgres private_email: 1 rows (private_email: PostgreSQL first, then "
            "Supabase)" in check.stdout
        ), check.stdout
        assert "ok:    supabase domains: 1200 rows" in check.stdout
    finally:
        fake.stop()


def test_supabase_down_at_start_then_up_later_down_again(make_server, postgrest):
    postgrest.down = True
    server = make_server(
        domains=(), supabase_url=postgrest.url, supabase_key=KEY, start=False, **FAST
    ).start(ready=r"listening on")
    # Never accept-all by accident: 451 until the lists are loaded.
    assert smtp_reply(server.port, "a@sender.test", "x@d1.test") == (
        451,
        b"4.3.0 Domain and ban lists not loaded yet - please retry later",
    )
    postgrest.down = False
    eventually(lambda: smtp_reply(server.port, "a@sender.test", "x@d1.test")[0] == 250)
    postgrest.down = True
    failed_before = len(postgrest.requests)
    eventually(lambda: len(postgrest.requests) > failed_before + 3)  # refreshes failing
    assert smtp_reply(server.port, "a@sender.test", "x@d1.test")[0] == 250  # last good lists
    assert smtp_reply(server.port, "spam@bad.test")[0] == 550


def test_postgres_table_edits_change_replies(make_server, database_url):
    server = make_server(domains=("example.com",), **FAST)
    port = server.port
    assert smtp_reply(port, "a@sender.test", "x@later.test")[0] == 550
    query(database_url, "INSERT INTO domains (domain) VALUES ('later.test')")
    eventually(lambda: smtp_reply(port, "a@sender.test", "x@later.test")[0] == 250)
    query(database_url, "UPDATE domains SET active = false WHERE domain = 'example.com'")
    eventually(lambda: smtp_reply(port, "a@sender.test", "x@example.com")[0] == 550)
    query(
        database_url,
        "INSERT INTO bans (scope, value, match_type) VALUES ('email', 'casino', 'contains')",
    )
    eventually(lambda: smtp_reply(port, "vip-CASINO@x.test") == (550, b"5.7.1 Sender banned"))
    assert smtp_reply(port, "")[0] == 250  # the null sender is not banned by 'contains'
    query(database_url, "UPDATE bans SET status = 'inactive'")
    eventually(lambda: smtp_reply(port, "vip-casino@x.test")[0] == 250)


def test_banned_sender_never_uploads_a_body(make_server, database_url):
    server = make_server()
    query(database_url, "INSERT INTO bans (scope, value) VALUES ('domain', 'evil.test')")
    server.stop()
    server = make_server()
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
        client.ehlo("x.test")
        assert client.mail("a@evil.test") == (550, b"5.7.1 Domain banned")
        assert client.rcpt("x@example.com")[0] == 503  # no transaction: no DATA possible


def test_private_email_stamped_in_the_commit(make_server, database_url):
    server = make_server(ack_mode="durable")
    query(database_url, "INSERT INTO private_email (email) VALUES ('Owner@Example.com')")
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
        client.sendmail("a@sender.test", ["owner@example.com"], b"Subject: p\r\n\r\nx\r\n")
    stamp = query(database_url, "SELECT last_updated_at FROM private_email")[0][0]
    received = query(database_url, "SELECT received_at FROM emails")[0][0]
    assert stamp is not None and stamp >= received


def test_empty_whitelist_says_how_to_fix(make_server):
    server = make_server(domains=())
    assert "whitelist is empty" in server.log and "domains add" in server.log
    assert smtp_reply(server.port, "a@sender.test", "x@example.com")[0] == 550


def test_heartbeat_only_while_healthy(make_server, database_url):
    monitor = Monitor()
    proxy = TCPProxy(db_address(database_url))
    try:
        server = make_server(
            database_url=with_port(database_url, proxy.port),
            heartbeat_url=monitor.url,
            heartbeat_interval="0.2",
        )
        eventually(lambda: monitor.hits >= 3)
        proxy.cut()  # the database is gone
        # The check may wait out its 5 s timeout on the cut connection first.
        server.wait_for_log(r"unhealthy, not pinging: database unreachable", timeout=30)
        stopped_at, refused = monitor.hits, proxy.refused
        # Each health check now tries the database and is turned away: after
        # many of them, not one ping may have gone out.
        eventually(lambda: proxy.refused >= refused + 10, timeout=60)
        assert monitor.hits == stopped_at, "pinged while the database was unreachable"
        proxy.restore()
        eventually(lambda: monitor.hits >= stopped_at + 3, timeout=30)
    finally:
        monitor.stop()
        proxy.stop()


async def test_heartbeat_logs_each_reason_on_its_own_timer(caplog):
    """One reason's log line must not hide another's for a minute."""
    import httpx

    from app.heartbeat import Heartbeat

    reasons = iter([["lists not loaded"], ["database unreachable: gone"], ["lists not loaded"]])

    async def ready() -> tuple[bool, list[str]]:
        return False, next(reasons)

    async with httpx.AsyncClient() as client:
        heartbeat = Heartbeat("http://127.0.0.1:9/never", client, ready)
        with caplog.at_level("WARNING", logger="app.heartbeat"):
            for _ in range(3):
                assert await heartbeat.once() is False
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "[heartbeat] unhealthy, not pinging: lists not loaded",
        "[heartbeat] unhealthy, not pinging: database unreachable: gone",
    ]


def run_cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return app_command(*args, DATABASE_URL=database_url)


def test_domains_and_bans_cli(database_url):
    assert run_cli(database_url, "domains", "add", " Example.COM. ").stdout == "added example.com\n"
    assert run_cli(database_url, "domains", "add", "*.Wild.test").returncode == 0
    assert run_cli(database_url, "domains", "list").stdout == "*.wild.test\nexample.com\n"
    bad = run_cli(database_url, "domains", "add", "not a domain")
    assert bad.returncode == 2 and "is not a valid domain" in bad.stderr
    assert run_cli(database_url, "domains", "remove", "example.com").returncode == 0
    gone = run_cli(database_url, "domains", "remove", "example.com")
    assert gone.returncode == 1 and "not in the list" in gone.stderr

    assert (
        run_cli(database_url, "bans", "add", "email", "promo", "--match", "contains").returncode
        == 0
    )
    assert run_cli(database_url, "bans", "add", "domain", "Evil.test").returncode == 0
    assert run_cli(database_url, "bans", "list").stdout == (
        "domain\texact\tactive\tevil.test\nemail\tcontains\tactive\tpromo\n"
    )
    scope = run_cli(database_url, "bans", "add", "ip", "1.2.3.4")
    assert scope.returncode == 2 and "invalid choice: 'ip'" in scope.stderr
    bad_domain = run_cli(database_url, "bans", "add", "domain", "no such")
    assert bad_domain.returncode == 2 and "not a valid domain ban value" in bad_domain.stderr
    assert run_cli(database_url, "bans", "remove", "domain", "evil.test").returncode == 0
