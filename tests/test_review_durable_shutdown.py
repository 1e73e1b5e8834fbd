"""Review: durable mode, SIGTERM while a session waits for its commit (the
database is slow: a lock held by someone else). The drain spools the
message ("durable sessions still waiting then get their 250: the spool
keeps the promise", app/service.py docstring) but Service.drain closes
every session with 421 right after writer.drain returns, in the same loop
turn, before the waiting handler can send its 250. The sender sees 421 and
sends again; the restart replays the spooled copy too: stored twice.
"""

from __future__ import annotations

import signal
import threading

from .helpers import eventually, query
from .test_promises import holding, send, subjects


def test_spooled_durable_message_gets_its_250(make_server, database_url):
    server = make_server(ack_mode="durable", durable_timeout="30", drain_timeout="2")
    outcome: dict[str, object] = {}

    def sender() -> None:
        outcome["reply"] = send(server.port, "once")

    name = database_url.rsplit("/", 1)[1]
    with holding(database_url, "LOCK TABLE inbox IN ACCESS EXCLUSIVE MODE"):
        thread = threading.Thread(target=sender)
        thread.start()
        eventually(  # the message is in the writer's INSERT, waiting for the lock
            lambda: (
                query(
                    database_url,
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 "
                    "AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO raw_messages%'",
                    name,
                )[0][0]
                == 1
            )
        )
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        thread.join(30)
        code = server.process.wait(60)
    server.close()
    assert code == 0
    assert "spooled 1 messages" in server.log, server.log[-3000:]
    reply = outcome.get("reply")
    restarted = make_server(ack_mode="durable")  # replays the spool
    eventually(lambda: subjects(database_url) == ["once"])
    if not (isinstance(reply, tuple) and reply[0] == 250):
        assert send(restarted.port, "once")[0] == 250  # the sender's retry after its 421
    assert send(restarted.port, "after")[0] == 250  # durable: the retry, if any, is in too
    assert subjects(database_url) == ["after", "once"], (
        f"sender was told {reply!r} for a message that was spooled: stored "
        f"{len(subjects(database_url))} times"
    )
