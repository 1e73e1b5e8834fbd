"""The global receive switch through real servers: `pause` reaches every
host sharing the database at once (NOTIFY), answers 421 4.3.2 with the
reason at connect and at MAIL, and `resume` undoes it; mail accepted before
the pause is kept."""

from __future__ import annotations

import smtplib

from .defence_helpers import greeting, send, stored
from .helpers import app_command, eventually


def cli(url: str, *args: str) -> str:
    done = app_command(*args, DATABASE_URL=url)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_pause_and_resume_every_host(make_server, database_url):
    first = make_server(pause_refresh="3600")  # NOTIFY alone must carry it
    second = make_server(pause_refresh="3600")
    step, code, accepted = send(first.port)
    assert (step, code) == ("DATA", 250)
    open_session = smtplib.SMTP("127.0.0.1", second.port, timeout=30)
    open_session.ehlo("client.test")

    out = cli(database_url, "pause", "--reason", "moving to new disks\r\n until 18:00")
    assert "421 4.3.2 Not receiving mail now: moving to new disks until 18:00" in out
    expected = b"421 4.3.2 Not receiving mail now: moving to new disks until 18:00"
    for server in (first, second):
        eventually(lambda server=server: greeting(server.port) == expected)
        server.wait_for_log(r"\[lists\] paused: moving to new disks until 18:00")
    # A session opened before the pause: its next MAIL gets the 421, then it is closed.
    assert open_session.mail("a@sender.test") == (421, expected[4:])
    try:
        assert open_session.noop()[0] != 250
    except smtplib.SMTPServerDisconnected:
        pass
    first.wait_for_log(r"refused 127\.0\.0\.1: paused")

    assert "receiving again" in cli(database_url, "resume")
    for server in (first, second):
        eventually(lambda server=server: greeting(server.port).startswith(b"220 "))
    assert send(second.port)[:2] == ("DATA", 250)
    assert stored(database_url, accepted)["junk"] is False  # kept through the pause


def test_pause_without_reason_and_missed_notify(make_server, database_url):
    server = make_server(pause_refresh="0.2")
    # Written straight into the table, no NOTIFY: the periodic read finds it.
    from .helpers import query

    query(database_url, "INSERT INTO receive_pause (reason) VALUES (NULL)")
    eventually(
        lambda: (
            greeting(server.port)
            == b"421 4.3.2 Not receiving mail now: paused by the operator, try again later"
        )
    )
    assert "was not paused" not in cli(database_url, "resume")
    eventually(lambda: greeting(server.port).startswith(b"220 "))
