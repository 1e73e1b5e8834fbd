"""A small authoritative DNS server on 127.0.0.1 (dnslib) for the auth tests.

`records` maps (name, type) to a list of values (TXT values are str; long
ones are split into 255-byte strings as real zones do). Unknown names get
NXDOMAIN. `stop()` closes the port (queries then fail); `zone.silent = True`
drops queries unanswered (queries then time out).
"""

from __future__ import annotations

import base64
import subprocess
from typing import Any

from dnslib import QTYPE, RCODE, RR, TXT, A, DNSError, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class Zone(BaseResolver):  # type: ignore[misc]
    def __init__(self, records: dict[tuple[str, str], list[str]]) -> None:
        self.records = {(name.lower().rstrip("."), kind): v for (name, kind), v in records.items()}
        self.silent = False
        self.queries: list[str] = []

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        name = str(request.q.qname).lower().rstrip(".")
        kind = QTYPE[request.q.qtype]
        self.queries.append(f"{name} {kind}")
        if self.silent:
            raise DNSError("silent")  # dnslib then sends nothing
        reply = request.reply()
        values = self.records.get((name, kind))
        if values is None:
            if not any(n == name for n, _ in self.records):
                reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for value in values:
            if kind == "TXT":
                data = value.encode()
                rdata: Any = TXT([data[i : i + 255] for i in range(0, len(data), 255)])
            else:
                rdata = A(value)
            reply.add_answer(RR(request.q.qname, QTYPE.reverse[kind], rdata=rdata, ttl=60))
        return reply


class DnsServer:
    def __init__(self, records: dict[tuple[str, str], list[str]]) -> None:
        self.zone = Zone(records)
        self._server = DNSServer(
            self.zone,
            port=0,
            address="127.0.0.1",
            logger=DNSLogger("-request,-reply,-truncated,-error,-recv,-send"),
        )
        self._server.start_thread()
        self.port = self._server.server.server_address[1]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.stop()
        self._server.server.server_close()


def dkim_key() -> tuple[bytes, str]:
    """A fresh RSA 2048 signing key: (PEM private key, base64 DER public key for p=)."""
    private = subprocess.run(
        ["openssl", "genrsa", "-traditional", "2048"], capture_output=True, check=True
    ).stdout
    public = subprocess.run(
        ["openssl", "rsa", "-pubout", "-outform", "DER"],
        input=private,
        capture_output=True,
        check=True,
    ).stdout
    return private, base64.b64encode(public).decode()
