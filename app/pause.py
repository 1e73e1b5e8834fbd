"""The global receive switch: `python -m app pause [--reason]` / `resume`.

A row in `receive_pause` pauses every host sharing the database: the CLI
writes it and announces it (NOTIFY on the lists channel), every service
re-reads it at once (and every PAUSE_REFRESH seconds, in case a NOTIFY was
missed), and while it is there new connections and new transactions are
answered `421 4.3.2` with the operator's reason. Messages already past DATA
are unaffected: a pause never loses mail that was answered 250.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from . import replies

TABLE = "receive_pause"
REASON_MAX = 200  # characters of the reason that go into the reply


def build_pause(rows: Iterable[Mapping[str, Any]]) -> str | None:
    """The reason to refuse with (a default one if none was given); None: receiving."""
    for row in rows:
        return clean_reason(row.get("reason")) or replies.PAUSED_NO_REASON
    return None


def clean_reason(text: str | None) -> str:
    """The reason as an SMTP reply can carry it: printable ASCII on one line."""
    printable = "".join(c if 32 <= ord(c) < 127 else " " for c in (text or ""))
    return " ".join(printable.split())[:REASON_MAX]


def reply(reason: str) -> str:
    return replies.PAUSED.format(reason=reason)
