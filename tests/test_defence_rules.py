"""The rules table through the real server: each rule decided at the
earliest SMTP step that has its data, in priority order; actions reject
(its reply), junk, accept; rules from PostgreSQL (CLI, announced at once)
and from Supabase; a broken rule refused by the CLI and skipped (logged) at
load; a regex that would backtrack runs in linear time; `rules test`."""

from __future__ import annotations

import pytest

from .defence_helpers import message, send, stored
from .helpers import app_command, eventually, query
from .netfakes import PostgREST


def cli(url: str, *args: str) -> str:
    done = app_command(*args, DATABASE_URL=url)
    assert done.returncode == 0, done.stderr
    return done.stdout


def add(url: str, *args: str) -> int:
    return int(cli(url, "rules", "add", *args).split()[-1])


def test_rules_at_each_step_in_priority_order(make_server, database_url):
    server = make_server(rules_refresh="3600")  # NOTIFY alone must carry the changes
    add(database_url, "--action", "reject", "--sender", "*@spam.test",
        "--reply", "550 5.7.1 No spam here, thanks")  # fmt: skip
    add(database_url, "--action", "reject", "--recipient", "blocked@example.com")
    add(database_url, "--action", "junk", "--subject", "(?i)you are a winner")
    add(database_url, "--action", "junk", "--header", "X-Mailer", "^BulkBlaster")
    # Priority 1: the allowed client's spam.test mail is accepted, not refused.
    add(database_url, "--action", "accept", "--client", "127.0.0.9/32", "--priority", "1")

    def refused_at_mail() -> bool:
        return send(server.port, "x@spam.test") == ("MAIL", 550, b"5.7.1 No spam here, thanks")

    eventually(refused_at_mail)
    assert send(server.port, "x@spam.test", source="127.0.0.9")[:2] == ("DATA", 250)
    assert send(server.port, recipients=("blocked@example.com",)) == (
        "RCPT",
        550,
        b"5.7.1 Message refused by policy",
    )
    step, code, reply = send(server.port, recipients=("blocked@example.com", "x@example.com"))
    assert (step, code) == ("DATA", 250)  # the other recipient still gets it
    assert stored(database_url, reply)["junk"] is False

    _, _, reply = send(server.port, data=message(subject="YOU ARE A WINNER today"))
    row = stored(database_url, reply)
    assert row["junk"] is True
    assert row["verdicts"]["reasons"] == ["rule: rule 3 (junk)"]
    assert row["verdicts"]["rule"]["why"] == ["subject matches '(?i)you are a winner'"]
    _, _, reply = send(server.port, data=message(headers="X-Mailer: BulkBlaster 3\r\n"))
    assert stored(database_url, reply)["verdicts"]["rule"]["id"] == 4
    # A reject rule on the body's data: the DATA reply waits for it and refuses.
    add(database_url, "--action", "reject", "--header", "X-Spam-Flag", "^YES",
        "--reply", "554 5.7.1 Flagged upstream")  # fmt: skip
    flagged = message(headers="X-Spam-Flag: YES\r\n")
    eventually(lambda: send(server.port, data=flagged) == ("DATA", 554, b"5.7.1 Flagged upstream"))
    server.wait_for_log(r"refused 127\.0\.0\.1: rule 1 \(spam\.test\)")

    listed = cli(database_url, "rules", "list")
    assert listed.splitlines()[0].startswith("5\tpriority 1\taccept")
    cli(database_url, "rules", "remove", "1")
    eventually(lambda: send(server.port, "x@spam.test")[:2] == ("DATA", 250))


def test_record_mode_stores_what_a_reject_rule_would_refuse_as_junk(make_server, database_url):
    server = make_server(rules_checks="record")
    add(database_url, "--action", "reject", "--sender", "*@spam.test")

    def junk_row() -> dict:
        step, code, reply = send(server.port, "x@spam.test")
        assert (step, code) == ("DATA", 250)  # never refused in record mode
        row = stored(database_url, reply)
        return row if row["junk"] else {}

    row = eventually(junk_row)  # once the NOTIFY has reloaded the rules
    assert row["verdicts"]["rule"]["action"] == "reject"
    assert row["verdicts"]["reasons"] == ["rule: rule 1 (reject)"]


def test_broken_rules_are_refused_or_skipped_and_lose_no_mail(make_server, database_url):
    bad = [
        (("--subject", r"(a)\1"), "is not a valid RE2 regex"),
        (("--sender", "x@y.test", "--reply", "250 2.0.0 fine"), "is not an SMTP refusal"),
        (("--sender", "x@y.test", "--reply", "550 4.7.1 mixed"), "is not an SMTP refusal"),
        (("--client", "not-a-network"), "is not a network"),
        (("--size-min", "10", "--size-max", "5"), "is above size_max"),
        ((), "a rule needs at least one condition"),
    ]
    for arguments, error in bad:
        done = app_command("rules", "add", "--action", "reject", *arguments,
                           DATABASE_URL=database_url)  # fmt: skip
        assert done.returncode == 2 and error in done.stderr, (arguments, done.stderr)
    server = make_server()
    # Written around the CLI (a website, SQL): skipped with one line, the rest applies.
    query(database_url, "INSERT INTO rules (subject_regex, action) VALUES ('(?<=x)y', 'reject')")
    query(database_url, "INSERT INTO rules (subject_regex, action) VALUES ('(a+)+$', 'junk')")
    cli(database_url, "rules", "list")  # any CLI change announces; reload now:
    add(database_url, "--action", "junk", "--header", "X-Never", "never")
    server.wait_for_log(r"\[lists\] rule 1: skipped: subject_regex '\(\?<=x\)y' is not a valid")
    # A subject that makes a backtracking engine run for ages (the client's
    # 30 s timeout would end the test): RE2 is linear. Under the parser's
    # 16 KiB cap on a decoded header, so the "!" is in what the rule reads.
    _, code, reply = send(server.port, data=message(subject="a" * 10000 + "!"))
    assert code == 250
    row = stored(database_url, reply)
    assert row["junk"] is False, row  # "(a+)+$" does not match "...!"
    _, code, reply = send(server.port, data=message(subject="a" * 10000))
    assert stored(database_url, reply)["verdicts"]["rule"]["id"] == 2


def test_rules_test_command_says_which_rule_and_why(make_server, database_url, tmp_path):
    make_server()
    add(database_url, "--action", "junk", "--client", "192.0.2.0/24", "--subject", "invoice")
    add(database_url, "--action", "reject", "--recipient", "*@example.com",
        "--has-attachments", "yes", "--priority", "5")  # fmt: skip
    eml = tmp_path / "m.eml"
    eml.write_bytes(message(subject="Your invoice"))
    out = cli(database_url, "rules", "test", str(eml), "--client", "192.0.2.7")
    assert "at end of DATA: rule 1 (junk): client 192.0.2.7 is in 192.0.2.0/24; " in out
    assert "subject matches 'invoice'" in out
    out = cli(database_url, "rules", "test", str(eml), "--client", "198.51.100.1")
    assert out.strip().endswith("no rule matches")


KEY = "service-role-key-for-tests"


@pytest.fixture
def postgrest():
    tables = {
        "domains": [{"id": 1, "domain": "example.com", "active": True}],
        "bans": [],
        "private_email": [],
        "rules": [
            {
                "id": 7,
                "priority": 1,
                "recipient": None,
                "sender": "*@supa.test",
                "client": None,
                "header_name": None,
                "header_regex": None,
                "subject_regex": None,
                "size_min": None,
                "size_max": None,
                "has_attachments": None,
                "action": "reject",
                "reply": "554 5.7.1 Refused by the website's rule",
                "note": "",
                "active": True,
            },
        ],  # fmt: skip
    }
    columns = {"bans": ("id", "scope", "value", "match_type", "status"),
               "private_email": ("id", "email")}  # fmt: skip
    fake = PostgREST(tables, KEY, columns)
    yield fake
    fake.stop()


def test_rules_from_supabase(make_server, postgrest):
    server = make_server(supabase_url=postgrest.url, supabase_key=KEY, rules_refresh="0.3")
    server.wait_for_log(r"rules loaded from supabase: 1 rows")
    eventually(
        lambda: (
            send(server.port, "x@supa.test")
            == ("MAIL", 554, b"5.7.1 Refused by the website's rule")
        )
    )
    postgrest.tables["rules"][0]["active"] = False
    eventually(lambda: send(server.port, "x@supa.test")[:2] == ("DATA", 250))
