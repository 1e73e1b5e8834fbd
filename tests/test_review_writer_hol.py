"""One sender whose DNS never answers must not hold back everyone's durable
250 (found by review: the single writer awaited every preparation in its
batch, so one message's AUTH_TIMEOUT delayed all the others)."""

from __future__ import annotations

import smtplib
import threading
import time
from typing import Any

from dnslib import DNSError

from .dnsserver import DnsServer, Zone
from .helpers import eventually


class BlackHole(Zone):
    """Never answers names under blackhole.test: lookups time out."""

    def resolve(self, request: Any, handler: Any) -> Any:
        if "blackhole" in str(request.q.qname):
            self.queries.append(str(request.q.qname))
            raise DNSError("silent")
        return super().resolve(request, handler)


def send_from(port: int, domain: str, subject: str) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
        refused = client.sendmail(
            f"a@{domain}",
            ["box@example.com"],
            f"From: a@{domain}\r\nSubject: {subject}\r\n\r\nx\r\n".encode(),
        )
        return 0 if refused else 250


def test_one_slow_sender_does_not_delay_everyone(make_server):
    dns = DnsServer({})
    dns._server.server.resolver = dns.zone = BlackHole({})
    try:
        # The slow sender's checks wait on DNS for up to AUTH_TIMEOUT: 60 s.
        server = make_server(
            ack_mode="durable", dns_resolver=dns.address, auth_timeout="60", durable_timeout="120"
        )
        slow: dict[str, int] = {}
        domain = f"x{time.time_ns()}.blackhole.test"  # never cached
        thread = threading.Thread(
            target=lambda: slow.update(code=send_from(server.port, domain, "slow"))
        )
        thread.start()
        eventually(lambda: dns.zone.queries)  # its checks are waiting on DNS now
        started = time.monotonic()
        assert send_from(server.port, "honest.test", "honest") == 250
        print(f"honest 250 after {time.monotonic() - started:.2f} s; the slow one still waits")
        assert thread.is_alive(), "the honest 250 came only after the slow message's checks"
        thread.join(180)
        assert slow["code"] == 250
    finally:
        dns.stop()
