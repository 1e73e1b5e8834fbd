"""Live push: mail sent over SMTP reaches open Mercure streams, through a lost
LISTEN connection too, and never the stream of another address."""

from __future__ import annotations

import json

import httpx

from .api_fixtures import make_stack, stack
from .api_helpers import (
    HUB,
    ApiServer,
    account,
    mail,
    next_event,
    open_stream,
    send,
    sse_events,
)
from .helpers import db_address, query, with_port
from .netfakes import TCPProxy


def test_new_message_then_account_on_the_stream(stack):
    with stack.client() as client:
        bob_id, token = account(client, "bob@example.com")
        with open_stream(client, f"/accounts/{bob_id}", token) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            # Subscribed before the headers: mail sent right now is not missed.
            send(stack.smtp.port, ["bob@example.com"], mail("bob@example.com", subject="live"))
            events = sse_events(response)
            message = next_event(events)
            assert "event" not in message  # Mercure's events are unnamed
            assert message["data"]["@type"] == "Message"
            assert message["data"]["subject"] == "live"
            assert message["data"]["intro"] == "hello there"
            assert message["data"]["accountId"] == f"/accounts/{bob_id}"
            assert set(message["data"]) >= {"id", "from", "to", "seen", "size", "downloadUrl"}
            owner = next_event(events)
            assert owner["data"]["@type"] == "Account"
            assert owner["data"]["id"] == bob_id
            assert owner["data"]["used"] == message["data"]["size"] > 0


def test_stream_survives_a_killed_listen_connection(stack):
    with stack.client() as client:
        bob_id, token = account(client, "bob@example.com")
        # The token may also come as ?authorization= (EventSource cannot set headers).
        with open_stream(client, f"/accounts/{bob_id}", authorization=token) as response:
            assert response.status_code == 200
            events = sse_events(response)
            killed = query(
                stack.database_url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'tempmail-api-listen' "
                "AND datname = current_database()",  # not another run's API on this machine
            )
            assert [r[0] for r in killed] == [True]
            # Sent while the hub may still be reconnecting: caught up, not lost.
            send(stack.smtp.port, ["bob@example.com"], mail("bob@example.com", subject="gap"))
            assert next_event(events)["data"]["subject"] == "gap"
            assert next_event(events)["data"]["@type"] == "Account"
            stack.api.wait_for_log(r"LISTEN re-established")
            send(stack.smtp.port, ["bob@example.com"], mail("bob@example.com", subject="after"))
            assert next_event(events)["data"]["subject"] == "after"  # not "gap" again


def test_a_stream_never_sees_another_address(stack):
    with stack.client() as client:
        bob_id, bob = account(client, "bob@example.com")
        carol_id, carol = account(client, "carol@example.com")
        # A token opens only its own account's topic.
        refused = client.get(HUB, params={"topic": f"/accounts/{carol_id}"},
                             headers={"Authorization": f"Bearer {bob}"})  # fmt: skip
        assert refused.status_code == 403
        assert client.get(HUB, params={"topic": f"/accounts/{bob_id}"}).status_code == 401
        with open_stream(client, f"/accounts/{bob_id}", bob) as response:
            events = sse_events(response)
            # Carol's mail commits first: a leak would be the first event here.
            send(stack.smtp.port, ["carol@example.com"], mail("carol@example.com", subject="c"))
            send(stack.smtp.port, ["bob@example.com"], mail("bob@example.com", subject="b"))
            first = next_event(events)
            assert first["data"]["subject"] == "b"
            assert next_event(events)["data"]["address"] == "bob@example.com"


def test_address_topic_for_open_addresses(stack):
    with stack.client() as client:
        with open_stream(client, "/addresses/Open@Example.com") as response:
            assert response.status_code == 200
            send(stack.smtp.port, ["open@example.com"], mail("open@example.com", subject="o"))
            event = next_event(sse_events(response))
            assert event["data"]["subject"] == "o" and event["data"]["accountId"] == ""
        _, token = account(client, "kept@example.com")
        assert client.get(HUB, params={"topic": "/addresses/kept@example.com"}).status_code == 401
        with open_stream(client, "/addresses/kept@example.com", token) as response:
            assert response.status_code == 200
        assert client.get(HUB).status_code == 400
        assert client.get(HUB, params={"topic": "/books/1"}).status_code == 400


def test_topics_per_stream_are_capped(stack):
    """Each topic costs queries at the start and at every recheck: one request
    may not subscribe to thousands (review finding)."""
    topics = [f"/addresses/t{n}@example.com" for n in range(21)]
    with stack.client() as client:
        with client.stream("GET", HUB, params={"topic": topics[:20]}) as response:
            assert response.status_code == 200
        # Streamed: were it accepted, the answer would be an endless stream.
        with client.stream("GET", HUB, params={"topic": topics}) as refused:
            assert refused.status_code == 400
            assert "20 topics" in json.loads(refused.read())["detail"]


def test_address_topic_needs_an_account_in_accounts_mode(make_stack):
    stack = make_stack(api_access="accounts")
    with stack.client() as client:
        refused = client.get(HUB, params={"topic": "/addresses/open@example.com"})
        assert refused.status_code == 401


def test_mail_committed_while_listen_is_down_is_caught_up(make_server, database_url, tmp_path):
    """The API reaches PostgreSQL through a proxy the test cuts: mail committed
    while it cannot LISTEN at all arrives once it is back (the catch-up)."""
    smtp = make_server()
    proxy = TCPProxy(db_address(database_url))
    api = ApiServer(with_port(database_url, proxy.port), str(tmp_path / "data"))
    try:
        api.start()
        with httpx.Client(base_url=api.url, timeout=30) as client:
            bob_id, token = account(client, "bob@example.com")
            with open_stream(client, f"/accounts/{bob_id}", token) as response:
                events = sse_events(response)
                proxy.cut()
                api.wait_for_log(r"LISTEN connection lost")
                send(smtp.port, ["bob@example.com"], mail("bob@example.com", subject="gap"))
                proxy.restore()
                assert next_event(events)["data"]["subject"] == "gap"
        api.wait_for_log(r"caught up 1 message")
    finally:
        api.kill()
        proxy.stop()
