"""A threaded SMTP load client that records what the server promised.

Every message carries a unique Subject marker; `outcomes` maps the marker to
the final reply code (250, 451, ... or 0 when the connection died before a
reply), so a test can check that each 250 is stored exactly once and that
each refused message is not stored at all.
"""

from __future__ import annotations

import smtplib
import threading
import time
from collections import Counter

from .helpers import query


class Load:
    def __init__(self, port: int, sessions: int, per_session: int, pause: float = 0.0) -> None:
        self.port = port
        self.sessions = sessions
        self.per_session = per_session
        self.pause = pause
        self.outcomes: dict[str, int] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._session, args=(n,), daemon=True) for n in range(sessions)
        ]

    def start(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def join(self, timeout: float = 120) -> Load:
        for thread in self.threads:
            thread.join(timeout)
        return self

    def count(self, code: int) -> int:
        with self.lock:
            return sum(1 for c in self.outcomes.values() if c == code)

    def wait_for(self, code: int, at_least: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.count(code) < at_least:
            assert time.monotonic() < deadline, f"only {self.count(code)} replies {code}"
            time.sleep(0.01)

    def _session(self, worker: int) -> None:
        n = 0
        while n < self.per_session and not self.stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as client:
                    client.ehlo("load.test")
                    while n < self.per_session and not self.stop.is_set():
                        marker = f"m-{worker}-{n}"
                        n += 1
                        self._record(marker, 0)
                        code = self._send(client, marker)
                        self._record(marker, code)
                        if self.pause:
                            time.sleep(self.pause)
            except (smtplib.SMTPException, OSError):
                time.sleep(0.05)  # server gone or closing us: reconnect

    def _send(self, client: smtplib.SMTP, marker: str) -> int:
        client.mail("load@sender.test")
        client.rcpt("load@example.com")
        body = f"Subject: {marker}\r\n\r\n{'x' * 2000}\r\n".encode()
        try:
            code, _ = client.data(body)
        except smtplib.SMTPDataError as error:
            code = error.smtp_code
        if code != 250:
            client.rset()
        return code

    def _record(self, marker: str, code: int) -> None:
        with self.lock:
            self.outcomes[marker] = code


def stored_subjects(database_url: str) -> Counter[str]:
    return Counter(r[0] for r in query(database_url, "SELECT subject FROM emails"))


def verify(load: Load, database_url: str, timeout: float = 60) -> dict[str, int]:
    """Every 250 stored exactly once, nothing refused stored; returns the figures."""
    accepted = {m for m, code in load.outcomes.items() if code == 250}
    refused = {m for m, code in load.outcomes.items() if code not in (0, 250)}
    deadline = time.monotonic() + timeout
    while True:
        stored = stored_subjects(database_url)
        if accepted <= set(stored) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    lost = accepted - set(stored)
    duplicates = {m for m, c in stored.items() if c > 1}
    figures = {
        "sent": len(load.outcomes),
        "250": len(accepted),
        "refused": len(refused),
        "stored": sum(1 for m in stored if m in load.outcomes),
        "lost": len(lost),
        "duplicates": len(duplicates),
        "refused_but_stored": len(refused & set(stored)),
    }
    print(f"figures: {figures}")
    return figures
