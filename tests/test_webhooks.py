"""Webhooks through the real service: a local receiver verifies every
signature with the standardwebhooks library; the outbox is PostgreSQL's.

Delivery of a signed event; a receiver down for a while (nothing lost, one
id per event); kill -9 mid-delivery (delivered after the restart, same id);
410 Gone disables the endpoint; a per-address endpoint gets only its
address's mail.
"""

from __future__ import annotations

import time

import httpx

from .api_helpers import mail, send
from .helpers import eventually, free_port, query, script
from .test_review_poison_rows import REFUSE_ONCE
from .webhook_helpers import FAST, add_hook, email_ids, endpoint, hooks_list, outbox
from .webhook_receiver import Receiver

ADDRESS = "hooked@example.com"


def test_delivers_a_signed_event(make_server, database_url):
    receiver = Receiver()
    try:
        # A name (localhost: ::1 and 127.0.0.1; the receiver has only the latter).
        url = f"http://localhost:{receiver.port}/hook"
        hook, receiver.secret = add_hook(database_url, url)
        metrics_port = free_port()
        server = make_server(**FAST, metrics_port=str(metrics_port))
        server.wait_for_log(r"\[webhooks\] subscribed")
        before = time.time()
        send(
            server.port, [ADDRESS], mail(ADDRESS, "Your code", "Your verification code is 482913.")
        )
        eventually(lambda: receiver.received)
        got = receiver.received[0]
        assert got.valid, got.headers
        assert got.headers["host"] == f"localhost:{receiver.port}"  # the URL's, not the address
        assert abs(int(got.headers["webhook-timestamp"]) - before) < 300
        assert got.payload["type"] == "message.received"
        data = got.payload["data"]
        assert data["id"] == email_ids(database_url, ADDRESS)[0]
        assert data["address"] == ADDRESS
        assert data["subject"] == "Your code"
        assert "alice@sender.test" in data["from"]
        assert data["size"] > 0 and data["received_at"]
        assert data["codes"] == ["482913"] and data["verify_link"] is None
        eventually(lambda: endpoint(database_url, hook)["delivered"] == 1)
        assert outbox(database_url) == []
        listed = hooks_list(database_url)
        assert f"{hook}\tok\t*\t{url}" in listed and "delivered=1" in listed
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        assert "tempmail_webhook_delivered_total 1.0" in metrics
        assert "tempmail_webhook_pending" in metrics
    finally:
        receiver.stop()


def test_receiver_down_then_up_loses_nothing(make_server, database_url):
    port = free_port()
    hook, secret = add_hook(database_url, f"http://127.0.0.1:{port}/hook")
    server = make_server(**FAST)
    server.wait_for_log(r"\[webhooks\] subscribed")
    for n in range(3):
        send(server.port, [ADDRESS], mail(ADDRESS, f"m{n}"))
    eventually(lambda: endpoint(database_url, hook)["failures"] >= 3)
    assert "failing" in hooks_list(database_url)
    receiver = Receiver(port)
    receiver.secret = secret
    try:
        eventually(lambda: len(set(receiver.ids())) == 3)
        eventually(lambda: outbox(database_url) == [])
        assert all(r.valid for r in receiver.received)
        # One id per event: a repeat carries the same id and the same message.
        by_id = {r.webhook_id: r.payload["data"]["id"] for r in receiver.received}
        assert len(set(by_id.values())) == 3
        assert sorted(by_id.values()) == sorted(email_ids(database_url, ADDRESS))
        first_seen = list(dict.fromkeys(receiver.subjects()))
        assert first_seen == ["m0", "m1", "m2"]  # in order, per endpoint
        row = endpoint(database_url, hook)
        assert row["delivered"] == 3 and row["failures"] == 0
    finally:
        receiver.stop()


def test_kill_mid_delivery_delivers_after_restart(make_server, database_url):
    receiver = Receiver()
    receiver.release.clear()  # the first request is held open
    try:
        hook, receiver.secret = add_hook(database_url, receiver.url)
        server = make_server(**FAST)
        server.wait_for_log(r"\[webhooks\] subscribed")
        send(server.port, [ADDRESS], mail(ADDRESS, "held"))
        assert receiver.arrived.wait(30)  # the service is mid-delivery
        server.kill()
        receiver.release.set()  # the held request is recorded (its answer goes nowhere)
        eventually(lambda: len(receiver.received) == 1)
        assert len(outbox(database_url)) == 1  # not recorded as delivered
        restarted = make_server(**FAST)
        restarted.wait_for_log(r"\[webhooks\] subscribed")
        eventually(lambda: len(receiver.received) == 2)
        first, again = receiver.received
        assert again.valid and again.webhook_id == first.webhook_id
        assert again.body == first.body
        eventually(lambda: outbox(database_url) == [])
        assert endpoint(database_url, hook)["delivered"] == 1
    finally:
        receiver.stop()


def test_gone_disables_the_endpoint(make_server, database_url):
    receiver = Receiver(status=410)
    try:
        hook, receiver.secret = add_hook(database_url, receiver.url)
        server = make_server(**FAST)
        server.wait_for_log(r"\[webhooks\] subscribed")
        send(server.port, [ADDRESS], mail(ADDRESS, "first"))
        eventually(lambda: endpoint(database_url, hook)["disabled_at"] is not None)
        assert "disabled (410 Gone" in hooks_list(database_url)
        send(server.port, [ADDRESS], mail(ADDRESS, "second"))
        eventually(lambda: len(email_ids(database_url, ADDRESS)) == 2)
        # The event would have been written with the mail: none was.
        assert outbox(database_url) == []
        assert len(receiver.received) == 1
    finally:
        receiver.stop()


def test_per_address_endpoint_gets_only_its_mail(make_server, database_url):
    mine, other, everyone = Receiver(), Receiver(), Receiver()
    try:
        _, mine.secret = add_hook(database_url, mine.url, "--address", "A@Example.com")
        _, other.secret = add_hook(database_url, other.url, "--address", "b@example.com")
        _, everyone.secret = add_hook(database_url, everyone.url)
        server = make_server(**FAST)
        server.wait_for_log(r"\[webhooks\] subscribed")
        send(server.port, ["a@example.com"], mail("a@example.com", "to a"))
        send(server.port, ["c@example.com"], mail("c@example.com", "to c"))
        send(server.port, ["a@example.com", "c@example.com"], mail("a@example.com", "to a+c"))
        eventually(lambda: len(everyone.received) == 4)
        eventually(lambda: len(mine.received) == 2)
        eventually(lambda: outbox(database_url) == [])  # nothing more is on its way
        assert [r.payload["data"]["address"] for r in mine.received] == ["a@example.com"] * 2
        assert mine.subjects() == ["to a", "to a+c"]
        assert other.received == []
        assert sorted(r.payload["data"]["address"] for r in everyone.received) == [
            "a@example.com",
            "a@example.com",
            "c@example.com",
            "c@example.com",
        ]
        assert all(r.valid for r in (*mine.received, *everyone.received))
    finally:
        for receiver in (mine, other, everyone):
            receiver.stop()


def test_broken_outbox_never_costs_mail(make_server, database_url):
    """Should the outbox refuse a batch's events, the mail is stored without them."""
    receiver = Receiver()
    try:
        add_hook(database_url, receiver.url)
        server = make_server(**FAST)
        server.wait_for_log(r"\[webhooks\] subscribed")
        query(
            database_url,
            "ALTER TABLE webhook_outbox ADD CONSTRAINT broken CHECK (false) NOT VALID",
        )
        send(server.port, [ADDRESS], mail(ADDRESS, "kept"))
        eventually(lambda: len(email_ids(database_url, ADDRESS)) == 1)
        server.wait_for_log(r"\[webhooks\] the outbox refused the events of 1 messages")
        assert outbox(database_url) == [] and receiver.received == []
    finally:
        receiver.stop()


def test_a_refusal_of_the_mail_is_not_blamed_on_the_outbox(make_server, database_url):
    """A write refused for the mail's own row was retried without its events
    and, once taken, the events were dropped as if the outbox had refused them."""
    receiver = Receiver()
    try:
        _, receiver.secret = add_hook(database_url, receiver.url)
        server = make_server(**FAST)
        server.wait_for_log(r"\[webhooks\] subscribed")
        script(database_url, REFUSE_ONCE)
        send(server.port, [ADDRESS], mail(ADDRESS, "refused once"))
        eventually(lambda: receiver.received)
        assert receiver.received[0].payload["data"]["subject"] == "refused once"
        assert "the outbox refused" not in server.log
    finally:
        receiver.stop()


def test_two_hosts_share_the_outbox_without_double_delivery(make_server, database_url):
    """Two services on one database, one slow receiver: every event arrives
    once, and never two of one endpoint at a time (the endpoint's row lock)."""
    receiver = Receiver()
    receiver.delay = 0.05
    try:
        _, receiver.secret = add_hook(database_url, receiver.url)
        hosts = [make_server(**FAST), make_server(**FAST)]
        for host in hosts:
            host.wait_for_log(r"\[webhooks\] subscribed")
        for n in range(20):
            send(hosts[n % 2].port, [ADDRESS], mail(ADDRESS, f"m{n}"))
        eventually(lambda: len(receiver.received) >= 20, timeout=60)
        eventually(lambda: outbox(database_url) == [])
        assert sorted(receiver.ids()) == sorted(set(receiver.ids()))  # no id twice
        assert len(receiver.received) == 20 and all(r.valid for r in receiver.received)
        assert receiver.most_inside == 1
    finally:
        receiver.stop()
