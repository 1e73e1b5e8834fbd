"""Review (issue 21 item 9): the log names the real cause of a failed write.

During an outage the writer logged `InterfaceError('cannot call
Connection.terminate(): connection has been released back to the pool')`:
app/db.py's error path terminated a connection asyncpg had already
released (it lost its server), and that second error replaced the first.

Here the writer's INSERT waits for a lock someone else holds, its backend
is terminated by an administrator (pg_terminate_backend), and the log must
say so; the message is written once the database takes it again.
"""

from __future__ import annotations

import threading

from .helpers import eventually, query
from .test_promises import holding, send, subjects

WAITING_INSERT = (
    "SELECT pid FROM pg_stat_activity WHERE datname = $1 "
    "AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO raw_messages%'"
)


def test_a_terminated_backend_is_logged_as_itself(make_server, database_url):
    server = make_server(ack_mode="durable", durable_timeout="60")
    name = database_url.rsplit("/", 1)[1]
    admin = database_url.rsplit("/", 1)[0] + "/postgres"
    outcome: dict[str, object] = {}
    with holding(database_url, "LOCK TABLE inbox IN ACCESS EXCLUSIVE MODE"):
        thread = threading.Thread(target=lambda: outcome.update(reply=send(server.port, "once")))
        thread.start()
        [row] = eventually(lambda: query(database_url, WAITING_INSERT, name))
        query(admin, "SELECT pg_terminate_backend($1)", row["pid"])
        server.wait_for_log(r"database write failed")
    thread.join(60)
    assert outcome["reply"][0] == 250  # type: ignore[index]
    assert subjects(database_url) == ["once"]
    failure = next(line for line in server.lines if "database write failed" in line)
    assert "released back to the pool" not in server.log, failure
    assert "terminating connection due to administrator command" in failure, failure
