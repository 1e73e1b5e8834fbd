"""Helpers of the defence tests: one SMTP transaction from a chosen loopback
address, the greeting of a fresh connection, a stored message's verdicts."""

from __future__ import annotations

import json
import smtplib
import socket
from typing import Any

from .helpers import eventually, query, queued_id


def greeting(port: int, source: str = "127.0.0.1") -> bytes:
    """The first reply line of a new connection from `source`."""
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as s:
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = s.recv(1024)
            if not chunk:
                break
            data += chunk
        return data.strip()


def message(subject: str = "hello", body: str = "hi", headers: str = "") -> bytes:
    return (
        f"From: a@sender.test\r\nTo: x@example.com\r\nSubject: {subject}\r\n{headers}\r\n{body}\r\n"
    ).encode()


def send(
    port: int,
    sender: str = "a@sender.test",
    recipients: tuple[str, ...] = ("x@example.com",),
    data: bytes | None = None,
    source: str = "127.0.0.1",
) -> tuple[str, int, bytes]:
    """One transaction: (step that answered last, code, text). The step is
    'MAIL', 'RCPT' (every recipient refused; the first refusal) or 'DATA'."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(source, 0)) as client:
        client.ehlo("client.test")
        code, text = client.mail(sender)
        if code != 250:
            return "MAIL", code, text
        refusals = []
        for recipient in recipients:
            reply = client.rcpt(recipient)
            if reply[0] != 250:
                refusals.append(reply)
        if len(refusals) == len(recipients):
            return "RCPT", *refusals[0]
        code, text = client.data(data if data is not None else message())
        return "DATA", code, text


def stored(url: str, reply: bytes, owner: str = "x@example.com") -> dict[str, Any]:
    """The emails row of the message `reply` queued, with its verdicts decoded."""
    raw_id = queued_id(reply)
    rows = eventually(
        lambda: query(
            url,
            "SELECT junk, verdicts::text AS verdicts FROM emails "
            "WHERE raw_id = $1::uuid AND mailbox_owner = $2",
            raw_id,
            owner,
        )
    )
    row = dict(rows[0])
    row["verdicts"] = json.loads(row["verdicts"]) if row["verdicts"] else None
    return row
