"""Review of issue 21 item 2: mail ready to write must not wait behind
BATCH_MAX messages still being parsed.

The writer takes up to BATCH_MAX messages and writes those whose
preparation is done; the others go back to the front of the line. When
every message of the batch is still being parsed (each up to
PARSE_TIMEOUT, two parser processes), the writer waited for one of them,
and mail that arrived ready behind them was not taken: a sender with
BATCH_MAX + 1 slow messages in flight (any message over 256 KiB queues for
the parser processes) held every other message's commit, and so its 250
in durable mode, for PARSE_TIMEOUT after PARSE_TIMEOUT. Shrunk here to
BATCH_MAX=2 and two slow messages; compared by order, no timing asserted.
"""

from __future__ import annotations

import select

from .helpers import query
from .test_review_parse_bound import many_addresses, message, open_data, sent_with


def test_ready_mail_is_written_past_a_batch_of_messages_still_parsing(make_server, database_url):
    server = make_server(batch_max="2", parse_timeout="20")  # durable: 250 after the commit
    slow = [open_data(server.port, message(b"slow", to=many_addresses(8_000_000))) for _ in "ab"]
    sent_with(server.port, message(b"ready", body=b"small-and-ready"))  # 250 read here
    for sock, _reply in slow:
        readable, _, _ = select.select([sock], [], [], 0)
        assert not readable, "a slow message was answered first: the ready one waited for it"
    for sock, reply in slow:
        assert reply.readline()[:3] == b"250"
        reply.close()
        sock.close()
    subjects = [r["subject"] for r in query(database_url, "SELECT subject FROM emails")]
    assert len(subjects) == 3 and "ready" in subjects  # the slow ones maybe stored unparsed
