"""The API as a subprocess (`python -m app api`), and small helpers for its tests.

The server starts from a clean environment: only the settings a test gives,
plus helpers.clean_environment() (PATH, HOME, locale). Readiness is an answer
on its port, not a sleep.
"""

from __future__ import annotations

import contextlib
import email.policy
import json
import os
import smtplib
import socket
import subprocess
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx

from .helpers import AppProcess, clean_environment, eventually, free_port, queued_id


class ApiServer(AppProcess):
    """`python -m app api` on a free port; ready once it answers and listens."""

    command = "api"

    def __init__(self, database_url: str, data_dir: str, **settings: str) -> None:
        self.port = free_port()
        super().__init__(
            {
                **clean_environment(),
                "DATABASE_URL": database_url,
                "DATA_DIR": data_dir,
                "API_PORT": str(self.port),
                "API_BIND": "127.0.0.1",
                "API_RATE_LIMIT": "100000",  # tests of the limit set their own
                "LOG_LEVEL": "info",
                **{k.upper(): str(v) for k, v in settings.items()},
            }
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> ApiServer:
        self.launch()
        deadline = time.monotonic() + timeout
        while True:
            if self.exited():
                raise AssertionError(f"api exited early:\n{self.log}")
            try:
                if httpx.get(self.url + "/domains", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"api not answering in {timeout}s:\n{self.log}"
            time.sleep(0.05)
        self.wait_for_log(r"\[events\] listening")
        return self


def mail(
    to: str,
    subject: str = "hello",
    text: str = "hello there",
    html: str | None = None,
    sender: str = "Alice Sender <alice@sender.test>",
    attachments: tuple[tuple[str, str, bytes], ...] = (),
) -> bytes:
    """A message as bytes: text, optional HTML, attachments (filename, type, data)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{time.monotonic_ns()}@sender.test>"
    message["Date"] = "Mon, 30 Nov 2026 10:00:00 +0000"
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for filename, content_type, data in attachments:
        maintype, subtype = content_type.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes(policy=email.policy.SMTP)


def send(port: int, rcpts: list[str], raw: bytes, sender: str = "alice@sender.test") -> str:
    """Send over SMTP; the queued id (the raw message's id) from the 250."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.test")
        code, _ = client.mail(sender)
        assert code == 250
        for rcpt in rcpts:
            assert client.rcpt(rcpt)[0] == 250, rcpt
        code, reply = client.data(raw)
        assert code == 250, reply
        return queued_id(reply)


def sse_events(
    response: httpx.Response,
) -> Iterator[dict[str, Any]]:
    """Parsed events of an open text/event-stream response (each event's
    fields; `data` JSON-decoded). Comment lines (the server's pings) come out
    as {"comment": text}, so a reader can give up at its own deadline."""
    fields: dict[str, Any] = {}
    for line in response.iter_lines():
        if line == "":
            if fields:
                if "data" in fields:
                    fields["data"] = json.loads(fields["data"])
                yield fields
                fields = {}
            continue
        if line.startswith(":"):
            yield {"comment": line[1:].strip()}
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        fields[name] = fields[name] + "\n" + value if name in fields else value


HUB = "/.well-known/mercure"


def open_stream(
    client: httpx.Client, topic: str, token: str | None = None, **params: str
) -> contextlib.AbstractContextManager[httpx.Response]:
    """GET the Mercure hub for `topic` as a stream (a `with` block)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.stream("GET", HUB, params={"topic": topic, **params}, headers=headers, timeout=60)


def next_event(events: Iterator[dict[str, Any]], timeout: float = 20) -> dict[str, Any]:
    """The next event; fails at the first ping after `timeout` seconds without one."""
    deadline = time.monotonic() + timeout
    for event in events:
        if "comment" not in event:
            return event
        assert time.monotonic() < deadline, "no event"
    raise AssertionError("stream ended")


def ends_without(events: Iterator[dict[str, Any]], subject: str, timeout: float = 30) -> None:
    """Read until the stream ends; fail if a message titled `subject` comes,
    or if the stream is still open at the first ping after `timeout` seconds."""
    for event in events:
        if "comment" in event:
            assert timeout > 0, "the stream did not end"
            timeout -= 15  # the server pings every 15 s
            continue
        assert event["data"].get("subject") != subject, f"the stream leaked {event['data']}"


def account(client: httpx.Client, address: str, password: str = "secret-pass") -> tuple[str, str]:
    """Create an account over the API; (account id, token)."""
    created = client.post("/accounts", json={"address": address, "password": password})
    assert created.status_code == 201, created.text
    token = client.post("/token", json={"address": address, "password": password})
    assert token.status_code == 200, token.text
    return created.json()["id"], token.json()["token"]


def wait_messages(client: httpx.Client, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    """Wait until GET /messages counts `count` messages; the first page (plain JSON)."""
    deadline = time.monotonic() + timeout
    while True:
        listed = client.get("/messages", headers={"Accept": "application/ld+json"})
        assert listed.status_code == 200, listed.text
        total = listed.json()["hydra:totalItems"]
        if total >= count:
            plain = client.get("/messages", headers={"Accept": "application/json"})
            return plain.json()  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"{total} of {count} messages listed"
        time.sleep(0.05)


def send_many(port: int, rcpt: str, count: int, prefix: str = "m") -> None:
    """`count` messages to `rcpt` on one SMTP session, subjects prefix-0 ..."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.test")
        for n in range(count):
            client.sendmail("alice@sender.test", [rcpt], mail(rcpt, subject=f"{prefix}-{n}"))


def answers(port: int) -> bool:
    """Whether something accepts a TCP connection on 127.0.0.1:`port`."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False


@contextlib.contextmanager
def nginx_serving(http: str, port: int, directory: Path) -> Iterator[int]:
    """nginx in the foreground with `http` inside its `http { }` block (which
    must listen on `port`), every path under `directory`; yields `port` once
    it answers, and stops nginx at the end."""
    temp = " ".join(
        f"{kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = directory / "nginx.conf"
    conf.write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"daemon off;\nworker_processes 1;\npid {directory / 'nginx.pid'};\n"
        + f"error_log {directory / 'error.log'};\nevents {{}}\n"
        + f"http {{\naccess_log off;\n{temp}\n{http}\n}}\n"
    )
    nginx = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(directory)])
    try:
        eventually(lambda: nginx.poll() is not None or answers(port))
        assert nginx.poll() is None, (directory / "error.log").read_text()
        yield port
    finally:
        nginx.terminate()
        nginx.wait(30)
