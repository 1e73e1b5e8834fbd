"""Endpoints that never answer do not keep a healthy one waiting: the sender
takes the endpoints whose events have waited longest first, so two
receivers that hold every request until the deadline, with the lower ids,
cannot take every turn of WEBHOOK_CONCURRENCY=1 from a third that answers."""

from __future__ import annotations

from .api_helpers import mail, send
from .helpers import eventually
from .webhook_helpers import FAST, add_hook
from .webhook_receiver import Receiver

ADDRESS = "fair@example.com"


def test_hanging_endpoints_do_not_starve_a_healthy_one(make_server, database_url):
    hanging = [Receiver(), Receiver()]
    healthy = Receiver()
    try:
        for receiver in hanging:
            receiver.release.clear()  # held until the test ends: every attempt times out
            add_hook(database_url, receiver.url)
        _, healthy.secret = add_hook(database_url, healthy.url)
        server = make_server(**FAST, webhook_concurrency="1", webhook_timeout="1")
        server.wait_for_log(r"\[webhooks\] subscribed")
        send(server.port, [ADDRESS], mail(ADDRESS, "for everyone"))
        eventually(lambda: healthy.received, timeout=60)
        assert healthy.received[0].valid
    finally:
        for receiver in (*hanging, healthy):
            receiver.stop()
