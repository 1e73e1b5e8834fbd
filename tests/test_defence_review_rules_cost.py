"""Review of issue 23: a rule's regex cannot stall the service.

RE2 is linear in the input but, once its DFA runs out of memory and it falls
back to its NFA, the cost is also times the pattern's program size. With the
1 MiB budget the rules had, an ordinary-looking `.{1,1000}viagra` (9009
instructions) took 42 s on a 256 KiB header value, on the event loop: every
session of the worker stood still. Now such a pattern is refused when added
(and skipped, with one log line, when written around the CLI), and a regex
sees at most 16 KiB of a value. The client's 30 s timeout, not a wall-clock
bound, catches a stall."""

from __future__ import annotations

from .defence_helpers import message, send, stored
from .helpers import app_command, query

COSTLY = ".{1,1000}viagra"


def test_a_costly_regex_is_refused_and_mail_with_a_huge_header_flows(make_server, database_url):
    done = app_command(
        "rules", "add", "--action", "junk", "--subject", COSTLY, DATABASE_URL=database_url
    )
    assert done.returncode == 2 and "is too large (9009 RE2 instructions" in done.stderr
    server = make_server()
    query(
        database_url,
        "INSERT INTO rules (header_name, header_regex, action) VALUES ('X-Big', $1, 'junk')",
        COSTLY,
    )
    done = app_command(
        "rules", "add", "--action", "junk", "--header", "X-Big", "(?i)cheap pills",
        DATABASE_URL=database_url,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr  # announced: the server reloads the rules
    server.wait_for_log(r"\[lists\] rule 1: skipped: header_regex '\.\{1,1000\}viagra' is too")
    big = "X-Big: " + "abcdefgh " * 28000 + "\r\n"  # 252 KiB on one header line
    step, code, reply = send(server.port, data=message(headers=big))
    assert (step, code) == ("DATA", 250)
    assert stored(database_url, reply)["junk"] is False
