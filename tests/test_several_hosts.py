"""The read side on several hosts (issue 24 item 4): two API processes
behind one nginx URL, each with its own LISTEN, every event on every
stream; and an API reading from a streaming replica that lags, whose
events still come from the primary and whose announced messages are
readable at once.

Real processes throughout: the SMTP service, two `python -m app api`,
nginx (the README's upstream example), and for the replica two PostgreSQL
clusters made by the test (tests/clusters.py).
"""

from __future__ import annotations

import contextlib
import functools
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from app.db_connect import Unusable

from . import clusters
from .api_helpers import (
    ApiServer,
    account,
    mail,
    next_event,
    nginx_serving,
    open_stream,
    send,
    sse_events,
)
from .helpers import Server, eventually, free_port, install_schema, query
from .readme import block_starting
from .test_api_review_forwarded import readme_nginx_server

SECRET = "the-shared-secret-of-every-api-host"  # API_SECRET: the same on every host


def readme_upstream() -> str:
    """The `upstream { ... }` block of the README's "Running on several hosts"."""
    return block_starting("Running on several hosts", "upstream tempmail_api {")


@contextlib.contextmanager
def nginx_in_front_of(api_ports: list[int], directory: Path) -> Iterator[int]:
    """nginx with the README's upstream of `api_ports` and its server block
    (plain HTTP on a free port); yields its port."""
    port = free_port()
    upstream = readme_upstream()
    for n, api_port in enumerate(api_ports, 1):
        upstream = upstream.replace(f"10.0.0.{n}:8025", f"127.0.0.1:{api_port}")
    server = (
        readme_nginx_server()
        .replace("listen 443 ssl;", f"listen 127.0.0.1:{port};")
        .replace("http://127.0.0.1:8025", "http://tempmail_api")
    )
    with nginx_serving(f"{upstream}\n{server}", port, directory):
        yield port


@pytest.fixture
def started() -> Iterator[list[ApiServer | Server]]:
    """Processes a test starts, killed at its end whatever happened."""
    processes: list[ApiServer | Server] = []
    yield processes
    for process in processes:
        if process.process is None:
            continue
        if process.process.poll() is None:
            process.kill()
        elif process.process.stdout is not None and not process.process.stdout.closed:
            process.close()  # one that exited on its own: its pipe


def listeners(url: str) -> int:
    """LISTEN connections of APIs on this database."""
    rows = query(
        url,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tempmail-api-listen' "
        "AND datname = current_database()",
    )
    return int(rows[0][0])


@pytest.mark.skipif(not shutil.which("nginx"), reason="nginx not installed")
def test_two_apis_behind_one_url_each_deliver_every_event(
    make_server, database_url, tmp_path, started
):
    """Streams opened on each API, directly and through nginx, all get every
    message's event: each API LISTENs on its own; a token from one API is
    good on the other (the shared API_SECRET); reads through the one URL
    land on both and find every message."""
    smtp = make_server()
    apis = [
        ApiServer(database_url, str(tmp_path / f"data{n}"), api_secret=SECRET, log_level="debug")
        for n in (1, 2)
    ]
    started.extend(apis)
    for api in apis:
        api.start()
    assert listeners(database_url) == 2
    with nginx_in_front_of([api.port for api in apis], tmp_path) as port:
        clients = [httpx.Client(base_url=api.url, timeout=30) for api in apis]
        clients.append(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30))
        with contextlib.ExitStack() as stack:
            for client in clients:
                stack.enter_context(client)
            bob_id, token = account(clients[0], "bob@example.com")  # made on the first API
            topic = f"/accounts/{bob_id}"
            responses = [stack.enter_context(open_stream(c, topic, token)) for c in clients]
            # Two more through nginx: round robin puts them on both APIs.
            responses += [stack.enter_context(open_stream(clients[2], topic, token)) for _ in "ab"]
            assert [r.status_code for r in responses] == [200] * 5
            for api in apis:  # one direct, one through nginx
                api.wait_for_log(r"stream subscribed \(2 open\)")
            streams = [sse_events(r) for r in responses]
            subjects = [f"several-{n}" for n in range(4)]
            for subject in subjects:
                send(smtp.port, ["bob@example.com"], mail("bob@example.com", subject=subject))
            for events in streams:
                got = []
                while len(got) < len(subjects):
                    event = next_event(events)["data"]
                    if event["@type"] == "Message":
                        got.append(event)
                assert sorted(e["subject"] for e in got) == subjects
            # Every announced message, read through the one URL (both APIs in turn).
            for event in got:
                read = clients[2].get(event["@id"], headers={"Authorization": f"Bearer {token}"})
                assert read.status_code == 200, read.text
                assert read.json()["subject"] == event["subject"]


@pytest.mark.skipif(not clusters.available(), reason="PostgreSQL 15's initdb/pg_basebackup missing")
@pytest.mark.skipif(not clusters.owner_exists(), reason="no postgres user to own the clusters")
def test_a_lagging_replica_serves_lists_and_the_primary_the_events(tmp_path, quiet_dns, started):
    """API_DATABASE_URL is a replica whose replay waits an hour (once the
    services' start-up DDL is replayed: a delayed standby holds the locks of
    DDL it has not applied, and reads there wait): the event
    still comes at once (LISTEN on the primary), the announced message is
    readable at once through the API (and its source), the list is the
    replica's (not there yet); once replay catches up the list has it. An
    API whose DATABASE_URL is the standby refuses to start."""
    schema = functools.partial(install_schema, domains=("example.com",))
    with clusters.primary_and_replica(schema) as (primary, replica):
        smtp = Server(
            {
                "DATABASE_URL": primary.url,
                "SPOOL_DIR": str(tmp_path / "spool"),
                "DNS_RESOLVER": quiet_dns.address,
                "RATE_LIMITS": "off",
            }
        )
        started.append(smtp)
        smtp.start()
        api = ApiServer(
            primary.url, str(tmp_path / "data"), api_database_url=replica.url, api_secret=SECRET
        )
        started.append(api)
        api.start()
        assert listeners(primary.url) == 1  # the API's LISTEN is on the primary
        with httpx.Client(base_url=api.url, timeout=30) as client:
            bob_id, token = account(client, "bob@example.com")  # a write: to the primary
            hold_replay_back(primary, replica)
            auth = {"Authorization": f"Bearer {token}"}
            with open_stream(client, f"/accounts/{bob_id}", token) as response:
                events = sse_events(response)
                send(smtp.port, ["bob@example.com"], mail("bob@example.com", subject="lagged"))
                announced = next_event(events)["data"]
            assert announced["subject"] == "lagged"
            assert_readable_at_once(client, auth, announced)
            listed = client.get("/messages", headers={**auth, "Accept": "application/ld+json"})
            assert listed.json()["hydra:totalItems"] == 0  # the replica's view: not replayed yet
            replica.configure("recovery_min_apply_delay = '0'\n")
            replica.reload()

            def listed_now() -> bool:
                answer = client.get("/messages", headers={**auth, "Accept": "application/json"})
                return [m["subject"] for m in answer.json()] == ["lagged"]

            eventually(listed_now, timeout=60, interval=0.2)
        # DATABASE_URL itself on the standby: refused at start, in one line.
        wrong = ApiServer(replica.url, str(tmp_path / "data2"))
        started.append(wrong)
        wrong.launch()
        eventually(wrong.exited)
        assert "DATABASE_URL is a standby" in wrong.log, wrong.log
        assert wrong.process is not None and wrong.process.returncode == 1


def hold_replay_back(primary: clusters.Cluster, replica: clusters.Cluster) -> None:
    """Once start-up's DDL (partitions made ahead) is replayed, the replica's
    replay waits an hour from now on."""
    eventually(lambda: replayed(primary.url, replica.url), timeout=60, interval=0.1)
    replica.configure("recovery_min_apply_delay = '1h'\n")
    replica.reload()
    eventually(lambda: apply_delay(replica.url) == "1h", interval=0.1)


def assert_readable_at_once(client: httpx.Client, auth: dict, announced: dict) -> None:
    """The announced message, its source, and the same through Mailpit's routes."""
    read = client.get(announced["@id"], headers=auth)
    assert read.status_code == 200, read.text
    assert read.json()["subject"] == "lagged"
    source = client.get(announced["@id"] + "/download", headers=auth)
    assert source.status_code == 200 and b"Subject: lagged" in source.content
    mailpit = f"/mailpit/bob@example.com/api/v1/message/{announced['id']}"
    viewed = client.get(mailpit, headers=auth)  # Mailpit's route, the same way
    assert viewed.status_code == 200 and viewed.json()["Subject"] == "lagged"
    raw = client.get(mailpit + "/raw", headers=auth)
    assert raw.status_code == 200 and b"Subject: lagged" in raw.content


def replayed(primary: str, replica: str) -> bool:
    """Has the replica replayed everything the primary has written so far?"""
    written = query(primary, "SELECT pg_current_wal_lsn()")[0][0]
    return bool(query(replica, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", written)[0][0])


def apply_delay(url: str) -> str:
    return str(query(url, "SHOW recovery_min_apply_delay")[0][0])


def test_where_the_api_reads_writes_and_listens():
    """replica.routes: a primary serves everything (LISTEN past a pooler on
    DATABASE_DIRECT_URL); a standby only reads; a standby without a primary
    named, or named as DATABASE_URL, is refused at start."""
    from app.api import replica

    api, main, direct = (f"postgresql://u@{h}/db" for h in ("replica", "primary", "direct"))
    one = replica.routes(Settings(database_url=main), main, "DATABASE_URL", standby=False)
    assert (one.reads, one.primary, one.listen, one.fallback) == (main, main, main, False)
    pooled = Settings(database_url=main, database_direct_url=direct)
    assert replica.routes(pooled, main, "DATABASE_URL", standby=False).listen == direct
    both = replica.routes(pooled, api, "API_DATABASE_URL", standby=True)
    assert (both.reads, both.primary, both.listen, both.fallback) == (api, main, direct, True)
    with pytest.raises(Unusable, match="set DATABASE_URL to its primary"):
        replica.routes(Settings(), api, "API_DATABASE_URL", standby=True)
    with pytest.raises(Unusable, match="DATABASE_URL is a standby"):
        replica.routes(Settings(database_url=main), main, "DATABASE_URL", standby=True)
