"""An event that waited behind a failing one until WEBHOOK_MAX_AGE is
dropped unsent: events are delivered until that age, not after it, and a
receiver that never answers does not cost WEBHOOK_TIMEOUT for each of a
backlog (which, with mail arriving faster than that, grew without end)."""

from __future__ import annotations

from .api_helpers import send_many
from .helpers import eventually
from .webhook_helpers import FAST, add_hook, endpoint, outbox
from .webhook_receiver import Receiver

ADDRESS = "late@example.com"


def test_events_past_max_age_are_dropped_unsent(make_server, database_url):
    receiver = Receiver()
    receiver.release.clear()  # every attempt times out, until the test ends
    try:
        hook, receiver.secret = add_hook(database_url, receiver.url)
        server = make_server(**FAST, webhook_timeout="1", webhook_max_age="2")
        server.wait_for_log(r"\[webhooks\] subscribed")
        send_many(server.port, ADDRESS, 4)
        eventually(lambda: endpoint(database_url, hook)["given_up"] == 4)
        assert outbox(database_url) == []
        receiver.release.set()  # the held attempts are recorded now
        eventually(lambda: receiver.received)
        assert set(receiver.subjects()) == {"m-0"}, receiver.subjects()
        server.wait_for_log(r"not sent: older than WEBHOOK_MAX_AGE")
    finally:
        receiver.stop()
