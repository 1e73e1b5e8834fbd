"""Metrics (Prometheus) and health over HTTP: /metrics, /healthz, /readyz.

The metric objects are module-level, as prometheus-client intends; stages
update them. With WORKERS>1 the supervisor sets PROMETHEUS_MULTIPROC_DIR
before the workers start, every worker binds METRICS_PORT with SO_REUSEPORT,
and /metrics from any worker aggregates all of them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

log = logging.getLogger("app.metrics")

CONNECTIONS = Counter("tempmail_connections_total", "SMTP connections opened")
ACCEPTED = Counter("tempmail_messages_accepted_total", "messages answered 250")
REFUSED = Counter("tempmail_refused_total", "refusals sent, by reason", ["reason"])
ROWS = Counter("tempmail_rows_written_total", "emails rows committed")
BATCHES = Counter("tempmail_batches_total", "batches committed")
BATCH_SIZE = Histogram(
    "tempmail_batch_messages",
    "messages per committed batch",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
COMMIT_SECONDS = Histogram(
    "tempmail_batch_commit_seconds",
    "time to write one batch",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1, 5),
)
ACK_SECONDS = Histogram(
    "tempmail_ack_seconds",
    "end of DATA to the 250 reply",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1, 5),
)
RATE_LIMITED = Counter(
    "tempmail_rate_limited_total", "messages or clients over a rate limit, by setting", ["limit"]
)
RATE_STORAGE_ERRORS = Counter(
    "tempmail_rate_storage_errors_total", "rate counter updates that failed (nothing refused)"
)
JUNK = Counter("tempmail_junk_total", "messages stored as junk, by check", ["check"])
SCANNER = Counter("tempmail_scanner_total", "spam scanner results, by outcome", ["outcome"])
DEAD_LETTERS = Counter("tempmail_dead_letters_total", "messages set aside in dead letters")
PARSE_ABANDONED = Counter(
    "tempmail_parse_abandoned_total", "messages stored unparsed: their parse passed its bound"
)
STORE_FULL = Counter(
    "tempmail_store_full_total", "writes the database refused for lack of disk space (53100)"
)
WRITER_ERRORS = Counter(
    "tempmail_writer_errors_total", "unexpected writer errors (the batch is written again)"
)
LOST = Counter(
    "tempmail_lost_total", "acknowledged messages that could be neither written nor spooled"
)
SPOOLED = Counter("tempmail_spooled_total", "messages spooled to disk at shutdown")
HOST = Gauge(
    "tempmail_host_info",
    "1, labelled with this host's name (HOST_NAME)",
    ["host"],
    multiprocess_mode="max",
)
QUEUE_DEPTH = Gauge(
    "tempmail_queue_depth", "messages waiting to be written", multiprocess_mode="livesum"
)
WEBHOOK_DELIVERED = Counter("tempmail_webhook_delivered_total", "webhook events delivered (2xx)")
WEBHOOK_FAILED = Counter(
    "tempmail_webhook_failed_total", "webhook attempts that failed (each is retried or dropped)"
)
WEBHOOK_DROPPED = Counter(
    "tempmail_webhook_dropped_total", "webhook events given up (WEBHOOK_MAX_AGE, 410 Gone)"
)
WEBHOOK_PENDING = Gauge(
    "tempmail_webhook_pending",
    "webhook events waiting in the outbox (all hosts)",
    multiprocess_mode="max",
)
LIST_LOADED = Gauge(
    "tempmail_list_loaded_timestamp_seconds",
    "when a list was last loaded",
    ["table"],
    multiprocess_mode="max",
)


def exposition() -> bytes:
    """The text format of every metric (of all workers in multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()


Readiness = Callable[[], Awaitable[tuple[bool, list[str]]]]


async def _respond(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ready: Readiness
) -> None:
    try:
        async with asyncio.timeout(10):
            request = await reader.readline()
            while (await reader.readline()).strip():  # skip the headers
                pass
        parts = request.split()
        path = parts[1].decode("ascii", "replace") if len(parts) > 1 else ""
        status, content_type, body = 404, "application/json", b'{"error":"not found"}'
        if path == "/metrics":
            status, content_type, body = 200, CONTENT_TYPE_LATEST, exposition()
        elif path == "/healthz":
            status, body = 200, b'{"status":"ok"}'
        elif path == "/readyz":
            ok, problems = await ready()
            status = 200 if ok else 503
            body = json.dumps({"ready": ok, "problems": problems}).encode()
        reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
    except (OSError, TimeoutError, ValueError):
        pass
    finally:
        writer.close()


async def start_http(host: str, port: int, ready: Readiness, shared: bool) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _respond(reader, writer, ready)

    server = await asyncio.start_server(handle, host, port, reuse_port=shared)
    log.info("[metrics] /metrics, /healthz, /readyz on %s:%d", host, port)
    return server
