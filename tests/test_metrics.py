"""Metrics and health endpoints, parsed with prometheus-client's own parser."""

from __future__ import annotations

import json
import smtplib
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from .helpers import db_address, eventually, free_port, with_port
from .netfakes import TCPProxy


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def samples(port: int) -> dict[str, float]:
    status, body = get(port, "/metrics")
    assert status == 200
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            key = sample.name + (
                "{" + ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items())) + "}"
                if sample.labels and "pid" not in sample.labels
                else ""
            )
            found[key] = found.get(key, 0) + sample.value
    return found


def send_many(port: int, count: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        for n in range(count):
            client.sendmail(
                "m@sender.test",
                ["a@example.com", "b@example.com"],
                f"Subject: {n}\r\n\r\nx\r\n".encode(),
            )
        client.ehlo("x")
        client.mail("m@sender.test")
        assert client.rcpt("z@elsewhere.test")[0] == 550


def test_counters_match_what_was_sent(make_server):
    metrics_port = free_port()
    server = make_server(metrics_port=str(metrics_port))
    send_many(server.port, 25)
    found = eventually(
        lambda: (s := samples(metrics_port)) and s.get("tempmail_rows_written_total") == 50 and s
    )
    assert found["tempmail_messages_accepted_total"] == 25
    assert found["tempmail_refused_total{reason=domain not allowed}"] == 1
    assert found["tempmail_batch_messages_count"] == found["tempmail_batches_total"] >= 1
    assert found["tempmail_ack_seconds_count"] == 25
    assert found["tempmail_connections_total"] >= 1
    assert found["tempmail_list_loaded_timestamp_seconds{table=domains}"] > 0
    assert get(metrics_port, "/healthz") == (200, b'{"status":"ok"}')


def test_readyz_follows_the_database(make_server, database_url):
    proxy = TCPProxy(db_address(database_url))
    metrics_port = free_port()
    try:
        make_server(
            database_url=with_port(database_url, proxy.port), metrics_port=str(metrics_port)
        )
        assert get(metrics_port, "/readyz")[0] == 200
        proxy.cut()
        status, body = get(metrics_port, "/readyz")
        assert status == 503 and "database unreachable" in json.loads(body)["problems"][0]
        assert get(metrics_port, "/healthz")[0] == 200  # alive, just not ready
        proxy.restore()
        eventually(lambda: get(metrics_port, "/readyz")[0] == 200)
    finally:
        proxy.stop()


def test_metrics_cover_all_workers(make_server):
    metrics_port = free_port()
    server = make_server(workers="2", metrics_port=str(metrics_port))
    server.wait_for_log(r"(?s)domains loaded.*domains loaded")  # both workers
    for _ in range(4):  # several connections, spread over both workers
        send_many(server.port, 10)
    eventually(lambda: samples(metrics_port).get("tempmail_rows_written_total") == 80)
    assert samples(metrics_port)["tempmail_messages_accepted_total"] == 40
    # Whichever worker answers, the sum is the same.
    assert all(samples(metrics_port)["tempmail_rows_written_total"] == 80 for _ in range(6))
