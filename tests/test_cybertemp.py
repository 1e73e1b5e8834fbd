"""Switching from the Cybertemp SMTP server: its tables, data and access rules survive.

Every test starts from tests/cybertemp.py's operator database and upgrades
it the way the README's checklist says: `init-db`, then `serve`.
"""

from __future__ import annotations

import re
import smtplib
import uuid

import pytest

from app import db_schema

from . import cybertemp
from .cybertemp import PRIVATE, PUBLIC, app, as_role, count, visible_ids
from .helpers import ROOT, as_sent, eventually, query

# The newest migration: the schema version a fresh install reports (011: who
# made each of the API's accounts).
LATEST = db_schema.migrations()[-1][0]

OUR_INDEXES = {"emails_owner_recent_idx", "emails_raw_id_idx", "emails_received_idx"}
THEIR_INDEXES = {"emails_pkey", "emails_mailbox_owner_idx", "emails_created_at_idx"}


def init_db(url: str) -> str:
    result = app("init-db", database_url=url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"schema at version {LATEST}"), result.stdout
    return result.stdout + result.stderr


def index_names(url: str) -> set[str]:
    rows = query(
        url, "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 'emails'::regclass"
    )
    return {r[0] for r in rows}


def assert_table_and_access_kept(
    url: str, old_rows: int, anon_before: set, vip_before: set
) -> None:
    """The table is the same table: plain, every row, RLS on, same policies
    (each role sees what it saw before), same grants."""
    assert query(
        url,
        "SELECT relkind::text, relrowsecurity FROM pg_class WHERE oid = 'emails'::regclass",
    ) == [("r", True)]
    assert count(url, "SELECT count(*) FROM emails") == old_rows
    assert count(url, "SELECT count(*) FROM emails WHERE received_at IS NULL") == old_rows
    policies = query(url, "SELECT polname FROM pg_policy ORDER BY 1")
    assert [r[0] for r in policies] == ["emails_owner_read", "emails_public_read"]
    assert visible_ids(url, "anon") == anon_before
    assert visible_ids(url, "authenticated", "vip@example.com") == vip_before
    assert visible_ids(url, "authenticated", "nobody@example.com") == set()
    grants = query(
        url,
        "SELECT grantee, string_agg(privilege_type, ',' ORDER BY privilege_type) FROM "
        "information_schema.role_table_grants WHERE table_name = 'emails' "
        "AND grantee IN ('anon', 'authenticated', 'service_role') GROUP BY 1 ORDER BY 1",
    )
    assert [tuple(r) for r in grants] == [
        ("anon", "SELECT"),
        ("authenticated", "SELECT"),
        ("service_role", "DELETE,INSERT,REFERENCES,SELECT,TRIGGER,TRUNCATE,UPDATE"),
    ]


def assert_dependents_kept(url: str, old_rows: int) -> None:
    """What Cybertemp built on `emails` is still there and valid: its view,
    trigger, publication and indexes (beside ours), its domains table."""
    summary = as_role(url, "anon", "SELECT mailbox_owner, messages FROM inbox_summary")
    assert [tuple(r) for r in summary] == [(PUBLIC, old_rows // 3)]
    assert query(url, "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal") == [
        ("emails_count_mail",)
    ]
    assert query(url, "SELECT pubname FROM pg_publication_tables WHERE tablename = 'emails'") == [
        ("supabase_realtime",)
    ]
    assert index_names(url) == THEIR_INDEXES | OUR_INDEXES
    assert query(url, "SELECT bool_and(indisvalid) FROM pg_index") == [(True,)]
    # Lists as Cybertemp keeps them: no `active` column was added to domains.
    assert "active" not in {
        r[0]
        for r in query(
            url,
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'domains'",
        )
    }


def test_init_db_keeps_everything_the_operator_built(database_url, tmp_path):
    old_rows = cybertemp.build(database_url)
    anon_before = visible_ids(database_url, "anon")
    vip_before = visible_ids(database_url, "authenticated", "vip@example.com")
    assert len(anon_before) == old_rows // 3 and len(vip_before) == old_rows // 3

    log = init_db(database_url)
    assert "added columns" in log and "building index emails_owner_recent_idx" in log
    again = init_db(database_url)  # nothing left to do: no DDL at all
    assert "[schema]" not in again

    assert_table_and_access_kept(database_url, old_rows, anon_before, vip_before)
    assert_dependents_kept(database_url, old_rows)

    check = app("check", database_url=database_url, spool_dir=str(tmp_path))
    for line in (
        f"ok:    schema version {LATEST} (this release: {LATEST})",
        "ok:    emails: plain table, kept as it was",
        f"ok:    emails: {old_rows} rows stored before the upgrade, kept by retention",
        "ok:    emails: row-level security on; policies: emails_owner_read, emails_public_read",
        "ok:    emails: privileges granted: anon SELECT; authenticated SELECT; service_role "
        "DELETE,INSERT,REFERENCES,SELECT,TRIGGER,TRUNCATE,UPDATE",
        "ok:    emails: triggers: emails_count_mail",
        "ok:    emails: views over it: inbox_summary",
        "ok:    emails: in publications: supabase_realtime",
        "ok:    raw_messages: partitioned by received_at",
        "ok:    domains: no `active` column (Cybertemp's table): every row is active",
        "ok:    retention: first run pending",
        "ok:    postgres domains: 2 rows",
        "ok:    postgres bans: 3 rows",
        "ok:    postgres private_email: 2 rows",
    ):
        assert line in check.stdout, f"{line!r} not in:\n{check.stdout}"


def test_domains_and_bans_commands_on_cybertemp_tables(database_url):
    cybertemp.build(database_url, rows_per_owner=1)
    url = {"database_url": database_url}
    assert app("domains", "add", "New.test", **url).stdout == "added new.test\n"
    assert app("domains", "add", "new.test", **url).returncode == 0  # already there: no duplicate
    assert app("domains", "list", **url).stdout == "*.example.org\nexample.com\nnew.test\n"
    # Cybertemp's bans: 'sender' is the email scope, a NULL match_type is exact.
    assert app("bans", "list", **url).stdout == (
        "domain\texact\tactive\tevil.test\nemail\tcontains\tactive\tcasino\n"
        "email\texact\tactive\tspammer@bad.test\n"
    )
    assert app("bans", "add", "email", "spammer@bad.test", **url).returncode == 0
    assert count(database_url, "SELECT count(*) FROM bans WHERE value = 'spammer@bad.test'") == 1
    assert app("bans", "remove", "email", "spammer@bad.test", **url).returncode == 0
    assert count(database_url, "SELECT count(*) FROM bans") == 2


def add_our_old_mail(url: str, owner: str, subject: str) -> None:
    """A message we stored three days ago (raw message and row)."""
    query(
        url,
        "WITH raw AS (INSERT INTO raw_messages (id, raw, received_at) VALUES "
        "(gen_random_uuid(), 'x', now() - interval '3 days') RETURNING id, received_at) "
        "INSERT INTO emails (mailbox_owner, subject, body, from_addr, raw_id, received_at) "
        "SELECT $1, $2, '', '', id, received_at FROM raw",
        owner,
        subject,
    )


def serve_mail_and_retention(database_url: str, spool, dns: str, old_rows: int) -> None:
    """The service on Cybertemp's tables: a new public and a new private
    message, a banned sender refused; retention's first run deletes nothing,
    its next one expires our expired public message only."""
    server = cybertemp.server(
        database_url, spool, dns, retention_hours="24", retention_interval="0.3"
    ).start()
    try:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
            client.sendmail("a@sender.test", [PUBLIC], b"Subject: new public\r\n\r\nx\r\n")
            client.sendmail("a@sender.test", [PRIVATE[0]], b"Subject: new private\r\n\r\nx\r\n")
            # Cybertemp's bans, as its table has them.
            assert client.mail("spammer@bad.test") == (550, b"5.7.1 Sender banned")
        server.wait_for_log(
            r"first run on this database, nothing deleted: it would delete "
            r"1 emails rows and 1 raw messages"
        )
        first = re.search(r"first run on this database.*", server.log)[0]
        assert (
            "kept 1 emails rows of private addresses, 1 raw messages their rows point at" in first
        )
        assert f"and {old_rows} rows stored before the upgrade" in first
        server.wait_for_log(r"\[retention\] expired 1 emails rows and 1 raw messages")
    finally:
        assert server.stop() == 0


def assert_website_view(database_url: str, old_rows: int, anon_before: set, counted: int) -> None:
    """The website's anon role reads what it read, plus the new public mail; the
    private address its own; Cybertemp's summary, counter and publication follow."""
    anon_after = visible_ids(database_url, "anon")
    new_public = {
        str(r[0]) for r in query(database_url, "SELECT id FROM emails WHERE subject = 'new public'")
    }
    assert anon_after == anon_before | new_public
    vip = as_role(
        database_url,
        "authenticated",
        "SELECT subject FROM emails WHERE received_at IS NOT NULL ORDER BY 1",
        email=PRIVATE[0],
    )
    assert [r[0] for r in vip] == ["new private", "ours, private"]
    summary = as_role(database_url, "anon", "SELECT mailbox_owner, messages FROM inbox_summary")
    assert [tuple(r) for r in summary] == [(PUBLIC, old_rows // 3 + 1)]
    assert (
        count(database_url, "SELECT received FROM mail_counter WHERE mailbox_owner = $1", PUBLIC)
        == counted + 1
    )
    assert query(
        database_url, "SELECT pubname FROM pg_publication_tables WHERE tablename = 'emails'"
    ) == [("supabase_realtime",)]


def test_serving_keeps_old_mail_private_mail_and_the_website_view(
    database_url, tmp_path, quiet_dns
):
    old_rows = cybertemp.build(database_url)
    anon_before = visible_ids(database_url, "anon")
    init_db(database_url)
    add_our_old_mail(database_url, PUBLIC, "ours, expired")
    add_our_old_mail(database_url, PRIVATE[0], "ours, private")
    counted = count(
        database_url, "SELECT received FROM mail_counter WHERE mailbox_owner = $1", PUBLIC
    )
    serve_mail_and_retention(database_url, tmp_path / "spool", quiet_dns.address, old_rows)
    subjects = [
        r[0]
        for r in query(
            database_url,
            "SELECT subject FROM emails WHERE received_at IS NOT NULL ORDER BY subject",
        )
    ]
    assert subjects == ["new private", "new public", "ours, private"]
    assert count(database_url, "SELECT count(*) FROM emails WHERE received_at IS NULL") == old_rows
    assert count(database_url, "SELECT count(*) FROM raw_messages") == 3
    assert_website_view(database_url, old_rows, anon_before, counted)
    # Readers ordering newest first see our rows first, the pre-upgrade ones after.
    newest = query(
        database_url,
        "SELECT subject FROM emails WHERE mailbox_owner = $1 "
        "ORDER BY received_at DESC NULLS LAST, created_at DESC LIMIT 2",
        PUBLIC,
    )
    assert [r[0] for r in newest] == ["new public", "old 1"]


# The README's field table ("Switching from Cybertemp"), each row asserted below.
README_FIELDS = (
    "id",
    "mailbox_owner",
    "mailbox",
    "subject",
    "body",
    "html",
    "from_addr",
    "to_addrs",
    "timestamp",
    "flags",
    "size",
    "created_at",
    "encrypted",
    "key_version",
    "header_to",
    "received_at",
)


def test_readme_field_table_is_the_one_tested():
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| column | we store | Cybertemp stored |") :]
    rows = table[: table.index("\n\n")].splitlines()[2:]
    assert tuple(row.split("`")[1] for row in rows) == README_FIELDS


def test_stored_fields_mean_what_cybertemp_stored(database_url, tmp_path, quiet_dns):
    """Each row of the README's field table, against the operator's table."""
    cybertemp.build(database_url, rows_per_owner=1)
    init_db(database_url)
    server = cybertemp.server(database_url, tmp_path / "spool", quiet_dns.address).start()
    with_html = (
        b"From: Sender Name <sender@example.net>\r\nTo: Alice <User1@Example.com>\r\n"
        b"Cc: carol@example.org\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/plain\r\n\r\nplain text\r\n--b\r\nContent-Type: text/html\r\n\r\n"
        b"<p>html</p>\r\n--b--\r\n"
    )
    no_subject = b"From: x@example.net\r\nTo: user1@example.com\r\n\r\njust text\r\n"
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
        # One message, two envelope recipients (one of them Bcc: not in the header).
        client.sendmail("Sender@Example.NET", ["User1@Example.com", "VIP@example.com"], with_html)
        client.sendmail("x@example.net", ["user1@example.com"], no_subject)
    eventually(
        lambda: (
            count(database_url, "SELECT count(*) FROM emails WHERE received_at IS NOT NULL") == 3
        )
    )
    assert server.stop() == 0
    rows = {
        (r["mailbox_owner"], r["subject"]): r
        for r in query(
            database_url, "SELECT e.*, r.raw FROM emails e JOIN raw_messages r ON r.id = e.raw_id"
        )
    }
    alice, bcc = rows[(PUBLIC, "café")], rows[(PRIVATE[0], "café")]
    plain = rows[(PUBLIC, "No Subject")]
    assert isinstance(alice["id"], uuid.UUID) and alice["id"] != bcc["id"]
    assert alice["mailbox"] == "INBOX"
    assert alice["to_addrs"] == [PUBLIC] and bcc["to_addrs"] == [PRIVATE[0]]
    assert (
        alice["header_to"] == bcc["header_to"] == ["Alice <User1@Example.com>", "carol@example.org"]
    )
    assert alice["from_addr"] == "sender@example.net"  # envelope sender, lower-cased
    assert alice["header_from"] == "Sender Name <sender@example.net>"
    assert alice["body"] == "plain text" and alice["html"] == "<p>html</p>"
    assert plain["body"].strip() == "just text" and plain["html"] == ""
    assert alice["size"] == len(as_sent(alice["raw"])) == len(with_html)
    assert plain["size"] == len(no_subject)
    for row in (alice, bcc, plain):
        assert row["encrypted"] is False and row["key_version"] is None
        assert row["timestamp"] == row["received_at"] and row["created_at"] is not None
        assert row["flags"] is None  # Cybertemp's writer never set it
    assert alice["raw_id"] == bcc["raw_id"]  # the raw message is stored once


@pytest.mark.parametrize(
    "change, refusal",
    [
        (
            "ALTER TABLE emails RENAME TO emails_data; "
            "CREATE VIEW emails AS SELECT * FROM emails_data",
            "emails is a view, not a table",
        ),
        (
            "ALTER TABLE emails ALTER COLUMN to_addrs TYPE text",
            "emails.to_addrs is text, and the service writes text[] there",
        ),
        (
            "ALTER TABLE emails ADD COLUMN user_id uuid NOT NULL DEFAULT gen_random_uuid(); "
            "ALTER TABLE emails ALTER COLUMN user_id DROP DEFAULT",
            "emails.user_id is NOT NULL without a default, and the service does not write it",
        ),
    ],
)
def test_init_db_refuses_what_it_cannot_carry_and_changes_nothing(database_url, change, refusal):
    cybertemp.build(database_url, rows_per_owner=1)
    for statement in change.split("; "):
        query(database_url, statement)
    result = app("init-db", database_url=database_url)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: init-db refused: " + refusal), lines
    assert lines[0].endswith("nothing was changed")
    assert query(
        database_url, "SELECT to_regclass('schema_migrations'), to_regclass('raw_messages')"
    ) == [(None, None)]


def test_retention_command_deletes_existing_mail_only_when_asked(database_url):
    old_rows = cybertemp.build(database_url)  # four days, evenly: a quarter is under 24 hours
    init_db(database_url)
    url = {"database_url": database_url, "retention_hours": "24"}
    plain = app("retention", **url)
    assert plain.returncode == 0, plain.stderr
    assert (
        "\ndeleted 0 emails rows" in plain.stdout
        and f"and {old_rows} rows stored before" in plain.stdout
    )
    dry = app("retention", "--include-existing", "--dry-run", **url)
    expired_public = count(
        database_url,
        "SELECT count(*) FROM emails WHERE mailbox_owner = $1 "
        "AND created_at < now() - interval '24 hours'",
        PUBLIC,
    )
    assert f"would delete {expired_public} emails rows" in dry.stdout, dry.stdout
    assert "private_email: 2 addresses (from postgres), exempt" in dry.stdout
    assert count(database_url, "SELECT count(*) FROM emails") == old_rows
    real = app("retention", "--include-existing", **url)
    assert f"deleted {expired_public} emails rows" in real.stdout, real.stdout
    assert count(database_url, "SELECT count(*) FROM emails") == old_rows - expired_public
    for owner in PRIVATE:  # private mail is never expired
        assert (
            count(database_url, "SELECT count(*) FROM emails WHERE mailbox_owner = $1", owner)
            == old_rows // 3
        )
    assert (
        count(
            database_url,
            "SELECT count(*) FROM emails WHERE mailbox_owner = $1 AND "
            "created_at >= now() - interval '23 hours'",
            PUBLIC,
        )
        > 0
    )
