"""Review of issue 23: a scanner that answers nonsense never costs a message.

A fake rspamd (a real HTTP server on a free port) answers /checkv2 with
what Python's JSON reader takes but PostgreSQL's jsonb refuses: a score of
NaN or Infinity, a symbol name with NUL or a lone surrogate. Before the
fix each message was answered 250 and then refused by the database (kept
only in spool/dead, never in the mailbox)."""

from __future__ import annotations

from typing import Any

import pytest

from .defence_helpers import send, stored
from .netfakes import HTTPFake, _Quiet


class _Rspamd(_Quiet):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.reply(200, self.server.fake.answer, "application/json")  # type: ignore[attr-defined]


class Rspamd(HTTPFake):
    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        super().__init__(_Rspamd)


@pytest.mark.parametrize(
    "answer, scanner",
    [
        (b'{"score": NaN, "symbols": {}}', {"scanner": "rspamd", "unchecked": "ValueError"}),
        (b'{"score": 1e400, "symbols": {}}', {"scanner": "rspamd", "unchecked": "ValueError"}),
        (
            b'{"score": 1, "symbols": {"A\\u0000B": {"score": 1}, "\\ud800C": {"score": 0}}}',
            {"scanner": "rspamd", "score": 1, "symbols": ["AB", "?C"]},
        ),
    ],
)
def test_nonsense_from_the_scanner_is_stored(
    make_server, database_url, answer: bytes, scanner: dict[str, Any]
):
    fake = Rspamd(answer)
    try:
        server = make_server(spam_scanner=f"rspamd://{fake.url.partition('//')[2]}")
        step, code, reply = send(server.port)
        assert (step, code) == ("DATA", 250)
        found = stored(database_url, reply)["verdicts"]["scanner"]
        found.pop("seconds", None)
        assert found == scanner
    finally:
        fake.stop()
