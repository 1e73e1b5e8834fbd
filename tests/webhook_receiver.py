"""A real local webhook receiver for the tests: an HTTP server in a thread
that checks each request's signature with the standardwebhooks library
and answers as the test says (200, 410, a redirect, or not at all yet)."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


@dataclasses.dataclass
class Received:
    webhook_id: str
    headers: dict[str, str]
    body: bytes
    valid: bool  # the signature verified with the endpoint's secret
    payload: Any  # the JSON body


class Receiver:
    """`status`: the answer (200, 410, 307 with `location`); `hold`: while set,
    requests wait (the service is killed meanwhile) and are then answered."""

    def __init__(self, port: int = 0, status: int = 200, location: str = "") -> None:
        self.secret = ""
        self.status = status
        self.location = location
        self.received: list[Received] = []
        self.arrived = threading.Event()  # a request reached the handler
        self.release = threading.Event()
        self.release.set()
        self.delay = 0.0  # seconds each answer takes: a slow receiver
        self.inside = 0  # requests being answered now
        self.most_inside = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                receiver.arrived.set()
                receiver.release.wait(120)
                with receiver._lock:
                    receiver.inside += 1
                    receiver.most_inside = max(receiver.most_inside, receiver.inside)
                time.sleep(receiver.delay)  # the receiver's pace, not a wait of the test
                receiver.record(dict(self.headers.items()), body)
                with receiver._lock:
                    receiver.inside -= 1
                self.send_response(receiver.status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def record(self, headers: dict[str, str], body: bytes) -> None:
        lowered = {k.lower(): v for k, v in headers.items()}
        try:
            Webhook(self.secret).verify(body, lowered)
            valid = True
        except (WebhookVerificationError, ValueError):
            valid = False
        payload = json.loads(body) if body else None
        self.received.append(Received(lowered.get("webhook-id", ""), lowered, body, valid, payload))

    def ids(self) -> list[str]:
        return [r.webhook_id for r in self.received]

    def subjects(self) -> list[str]:
        return [r.payload["data"]["subject"] for r in self.received]

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
