"""A threaded SMTP load client that records what the server promised.

Every message carries a unique Subject marker; `outcomes` maps the marker to
the final reply code (250, 451, ... or 0 when the connection died before a
reply), so a test can check that each 250 is stored exactly once, with the
exact bytes sent, and that each refused message is not stored at all.
"""

from __future__ import annotations

import hashlib
import re
import smtplib
import threading
import time
from collections import Counter

from .helpers import as_sent, query

THREAD_PREFIX = "load-"  # tests/conftest.py checks none outlives its test
SUBJECT = re.compile(rb"\r\nSubject: (m-\d+-\d+)\r\n")


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
            threading.Thread(
                target=self._session, args=(n,), name=f"{THREAD_PREFIX}{n}", daemon=True
            )
            for n in range(sessions)
        ]

    def start(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def join(self, timeout: float = 120) -> Load:
        for thread in self.threads:
            thread.join(timeout)
        return self

    def running(self) -> bool:
        return any(thread.is_alive() for thread in self.threads)

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
        body = message(marker)
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


def message(marker: str) -> bytes:
    return f"Subject: {marker}\r\n\r\n{'x' * 2000}\r\n".encode()


def row_count(database_url: str) -> int:
    return int(query(database_url, "SELECT count(*) FROM emails")[0][0])


def stored_subjects(database_url: str) -> Counter[str]:
    return Counter(r[0] for r in query(database_url, "SELECT subject FROM emails"))


def verify(load: Load, database_url: str, timeout: float = 60) -> dict[str, int]:
    """Every 250 stored exactly once with the bytes sent, nothing refused
    stored, no raw message without its row or the other way round."""
    accepted = {m for m, code in load.outcomes.items() if code == 250}
    refused = {m for m, code in load.outcomes.items() if code not in (0, 250)}
    deadline = time.monotonic() + timeout
    while True:
        stored = stored_subjects(database_url)
        # A 451 whose write may have committed is revoked by a later write
        # (store.py): wait for that too, not only for the 250s to arrive.
        settled = accepted <= set(stored) and not refused & set(stored)
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    lost = accepted - set(stored)
    duplicates = {m for m, c in stored.items() if c > 1}
    rows = query(
        database_url,
        "SELECT e.subject, r.raw FROM emails e JOIN raw_messages r ON r.id = e.raw_id",
    )
    digests = {r[0]: hashlib.sha256(as_sent(r[1])).digest() for r in rows}
    altered = {m for m in set(stored) & set(load.outcomes) if digests.get(m) != _digest(message(m))}
    raw_copies = Counter(
        match.group(1).decode()
        for r in query(database_url, "SELECT raw FROM raw_messages")
        if (match := SUBJECT.search(r[0]))
    )
    orphans = query(
        database_url,
        "SELECT (SELECT count(*) FROM raw_messages r WHERE NOT EXISTS "
        "(SELECT 1 FROM emails e WHERE e.raw_id = r.id)), "
        "(SELECT count(*) FROM emails e WHERE NOT EXISTS "
        "(SELECT 1 FROM raw_messages r WHERE r.id = e.raw_id))",
    )[0]
    figures = {
        "sent": len(load.outcomes),
        "250": len(accepted),
        "refused": len(refused),
        "stored": sum(1 for m in stored if m in load.outcomes),
        "lost": len(lost),
        "duplicates": len(duplicates),
        "refused_but_stored": len(refused & set(stored)),
        "altered": len(altered),
        "raw_duplicates": sum(1 for m, c in raw_copies.items() if c > 1),
        "raw_orphans": orphans[0],
        "row_orphans": orphans[1],
    }
    print(f"figures: {figures}")
    return figures


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def assert_kept(figures: dict[str, int]) -> None:
    """Nothing acknowledged lost, altered or doubled; nothing refused kept."""
    for name in (
        "lost",
        "duplicates",
        "refused_but_stored",
        "altered",
        "raw_duplicates",
        "raw_orphans",
        "row_orphans",
    ):
        assert figures[name] == 0, figures
