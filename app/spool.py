"""Spool: accepted messages kept on local disk when the database cannot take them.

`pending/` holds messages acknowledged with 250 but not yet committed (written
at shutdown with the database down); they are replayed at the next start and
each file is removed only after its commit. `dead/` holds messages whose row
the database rejected, with the reason, for an operator to look at.
One file per message: a JSON header line (envelope and reason), then the raw
bytes. Written to a temporary name, fsynced, renamed, directory fsynced.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from .model import Envelope

log = logging.getLogger("app.spool")

MAGIC = b"SPOOL1 "


def _encode(envelope: Envelope, reason: str | None) -> bytes:
    header = {
        "id": str(envelope.id),
        "received_at": envelope.received_at.isoformat(),
        "mail_from": envelope.mail_from,
        "recipients": list(envelope.recipients),
        "row_ids": [str(r) for r in envelope.row_ids],
        "remote_ip": envelope.remote_ip,
        "helo": envelope.helo,
        "tls": envelope.tls,
        "trace_length": envelope.trace_length,
        "reason": reason,
    }
    return MAGIC + json.dumps(header).encode() + b"\n" + envelope.raw


def _decode(data: bytes) -> tuple[Envelope, str | None]:
    if not data.startswith(MAGIC):
        raise ValueError("not a spool file")
    line, _, raw = data[len(MAGIC) :].partition(b"\n")
    header = json.loads(line)
    envelope = Envelope(
        id=uuid.UUID(header["id"]),
        received_at=datetime.datetime.fromisoformat(header["received_at"]),
        mail_from=header["mail_from"],
        recipients=tuple(header["recipients"]),
        raw=raw,
        remote_ip=header["remote_ip"],
        helo=header["helo"],
        row_ids=tuple(uuid.UUID(r) for r in header["row_ids"]),
        tls=bool(header.get("tls")),
        trace_length=int(header.get("trace_length", 0)),
    )
    return envelope, header.get("reason")


def _write_durably(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(".tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class Spool:
    def __init__(self, directory: str | Path) -> None:
        self.pending_dir = Path(directory) / "pending"
        self.dead_dir = Path(directory) / "dead"

    def _ensure(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def save_pending(self, envelope: Envelope) -> Path:
        path = self._ensure(self.pending_dir) / f"{envelope.id}.msg"
        _write_durably(path, _encode(envelope, None))
        return path

    def save_dead(self, envelope: Envelope, reason: str) -> Path:
        path = self._ensure(self.dead_dir) / f"{envelope.id}.msg"
        _write_durably(path, _encode(envelope, reason))
        return path

    def pending(self) -> Iterator[tuple[Path, Envelope]]:
        """Spooled messages to replay, oldest first; unreadable files are moved to dead/."""
        if not self.pending_dir.is_dir():
            return
        for path in sorted(self.pending_dir.glob("*.msg"), key=lambda p: p.stat().st_mtime):
            try:
                envelope, _ = _decode(path.read_bytes())
            except (OSError, ValueError, KeyError) as error:
                log.error("[spool] unreadable spool file %s (%s): moved to dead/", path, error)
                os.replace(path, self._ensure(self.dead_dir) / (path.name + ".unreadable"))
                continue
            yield path, envelope

    def dead(self) -> list[tuple[Path, str]]:
        """Dead letters with their reasons."""
        if not self.dead_dir.is_dir():
            return []
        found = []
        for path in sorted(self.dead_dir.iterdir()):
            try:
                reason = _decode(path.read_bytes())[1] or "?"
            except (OSError, ValueError, KeyError):
                reason = "unreadable spool file"
            found.append((path, reason))
        return found

    def counts(self) -> tuple[int, int]:
        """(pending, dead) file counts."""
        pending = len(list(self.pending_dir.glob("*.msg"))) if self.pending_dir.is_dir() else 0
        return pending, len(self.dead())
