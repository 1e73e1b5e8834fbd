"""Review of issue 23: a hung Redis (a listener that accepts and never
answers) as RATE_LIMIT_STORAGE costs a session STORAGE_TIMEOUT now and
then, not on every counter.

Before the fix every counter update waited its 0.5 s on a new connection to
the hung Redis: 1 at connect, 3 at MAIL, 2 per recipient, so a message to 30
recipients took 33 s before its 250 (measured), and a busy host's sessions
piled up into its connection limits. The connections made to the hung
listener count the waits (one each), so the test asserts no time."""

from __future__ import annotations

from .defence_helpers import send, stored
from .scanners import SilentScanner

RECIPIENTS = tuple(f"r{n}@example.com" for n in range(30))


def test_a_hung_redis_is_left_alone_after_it_failed(make_server, database_url):
    hung = SilentScanner()
    try:
        server = make_server(
            rate_limits="enforce", rate_limit_storage=f"redis://127.0.0.1:{hung.port}/0"
        )
        step, code, reply = send(server.port, recipients=RECIPIENTS)
        assert (step, code) == ("DATA", 250)
        assert stored(database_url, reply, owner=RECIPIENTS[-1])["junk"] is False
        # 64 counter updates; the storage is asked again only STORAGE_BACKOFF
        # (5 s) after a failure: a handful of tries, however slow the machine.
        assert len(hung.connections) <= 10
        server.wait_for_log(r"\[limits\] redis storage failed \(TimeoutError")
    finally:
        hung.stop()
