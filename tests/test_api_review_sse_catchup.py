"""Review finding: after a lost LISTEN connection the hub caught up with rows
whose received_at (the SMTP arrival time) was later than the loss less 120 s.
Mail that arrived long before it committed (it waited behind a lock, or in
the spool through an outage) and committed while the API could not LISTEN
was never pushed. The catch-up now goes by when rows were written.

Deterministic: the message arrives during a database outage and is spooled
at shutdown; its spool file is dated an hour back (as after an hour-long
outage); the next start replays it, committing it while the API's database
connections are cut; then they come back.
"""

from __future__ import annotations

import dataclasses
import datetime

import httpx

from app.spool import Spool

from .api_helpers import ApiServer, mail, next_event, open_stream, send, sse_events
from .helpers import db_address, eventually, query, with_port
from .netfakes import TCPProxy

ADDRESS = "late@example.com"
OUTAGE = datetime.timedelta(hours=1)


def spool_during_an_outage(make_server, database_url: str, spool: Spool) -> None:
    """Mail accepted (instant) while the database is unreachable, spooled at
    SIGTERM, its arrival then moved OUTAGE back."""
    proxy = TCPProxy(db_address(database_url))
    try:
        server = make_server(
            database_url=with_port(database_url, proxy.port), ack_mode="instant", drain_timeout="1"
        )
        proxy.cut()
        send(server.port, [ADDRESS], mail(ADDRESS, subject="late"))
        assert server.stop() == 0
    finally:
        proxy.stop()
    [(path, envelope)] = list(spool.pending())
    path.unlink()  # spooled again, older
    spool.save_pending([dataclasses.replace(envelope, received_at=envelope.received_at - OUTAGE)])


def test_old_message_committed_while_listen_is_down_reaches_the_stream(
    make_server, database_url, tmp_path
):
    spool_during_an_outage(make_server, database_url, Spool(tmp_path / "spool"))
    api_link = TCPProxy(db_address(database_url))
    api = ApiServer(with_port(database_url, api_link.port), str(tmp_path / "data"))
    try:
        api.start()
        client = httpx.Client(base_url=api.url, timeout=30)
        with client, open_stream(client, f"/addresses/{ADDRESS}") as response:
            assert response.status_code == 200
            events = sse_events(response)
            api_link.cut()  # the API loses its LISTEN connection (and its pool)
            api.wait_for_log(r"LISTEN connection lost")
            make_server()  # replays the spool: commits while the API cannot hear it
            [row] = eventually(
                lambda: query(database_url, "SELECT received_at, created_at FROM emails")
            )
            assert row["created_at"] - row["received_at"] > OUTAGE - datetime.timedelta(minutes=1)
            api_link.restore()
            event = next_event(events)
            assert event["data"]["subject"] == "late", event
        api.wait_for_log(r"caught up 1 message")
    finally:
        api.kill()
        api_link.stop()
