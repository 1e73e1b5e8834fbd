"""Spool: what must survive a restart, kept on local disk.

- `pending/`: messages acknowledged with 250 but not yet committed (written
  at shutdown with the database down); replayed at the next start, each file
  removed only once every message in it is committed or set aside.
- `dead/`: messages whose row the database rejected, with the reason, for
  an operator to look at.
- `revoke/`: ids of messages whose sender was told 451 after a write that
  may have committed anyway; deleted from the database at the next write,
  then forgotten. One empty file per id.

With WORKERS>1, worker N keeps its own spool in `worker-N/` under SPOOL_DIR,
so a worker restarted after a crash replays only its own files, never the
ones another live worker still holds. Files nobody would replay (a worker
number above WORKERS, or the other layout after WORKERS changed) are
adopted at start-up: moved into the adopting process's own spool.

A message file is a JSON header line (envelope, sender-authentication
verdict, reason), then the raw bytes. Every file is written to a temporary
name, fsynced, renamed, and its directory fsynced. At shutdown the whole
queue goes into one batch file (the messages' files, each after its
length), fsynced once; it is removed once every message in it is safe.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from .model import AuthResult, Envelope, Finding

log = logging.getLogger("app.spool")

MAGIC = b"SPOOL1 "
BATCH_MAGIC = b"SPOOLN1\n"  # a batch file: many messages' files, each after its length
MIN_FREE = 64 * 1024 * 1024  # bytes free below which the spool counts as full


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
        "auth": dataclasses.asdict(envelope.auth) if envelope.auth else None,
        "findings": [dataclasses.asdict(f) for f in envelope.findings],
        "reason": reason,
    }
    return MAGIC + json.dumps(header).encode() + b"\n" + envelope.raw


def _decode(data: bytes) -> tuple[Envelope, str | None]:
    if not data.startswith(MAGIC):
        raise ValueError("not a spool file")
    line, _, raw = data[len(MAGIC) :].partition(b"\n")
    header = json.loads(line)
    auth = header.get("auth")
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
        auth=AuthResult(**auth) if auth else None,
        findings=tuple(Finding(**f) for f in header.get("findings", ())),
    )
    return envelope, header.get("reason")


def _worker_number(directory: Path) -> int:
    suffix = directory.name.removeprefix(WORKER_PREFIX)
    return int(suffix) if suffix.isdigit() else -1


def _fsync_directory(directory: Path) -> None:
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _write_durably(path: Path, chunks: Iterable[bytes]) -> None:
    temporary = path.with_suffix(".tmp")
    with open(temporary, "wb") as handle:
        for chunk in chunks:
            handle.write(chunk)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_directory(path.parent)


def _batch(envelopes: list[Envelope]) -> Iterator[bytes]:
    """A batch file: BATCH_MAGIC, then each message's file, length first."""
    yield BATCH_MAGIC
    for envelope in envelopes:
        record = _encode(envelope, None)
        yield b"%d\n" % len(record)
        yield record


def _records(data: bytes) -> Iterator[bytes]:
    """The message files in a spool file: itself, or a batch file's records."""
    if not data.startswith(BATCH_MAGIC):
        yield data
        return
    offset = len(BATCH_MAGIC)
    while offset < len(data):
        end = data.index(b"\n", offset)
        start, length = end + 1, int(data[offset:end])
        if start + length > len(data):
            raise ValueError("truncated batch file")
        yield data[start : start + length]
        offset = start + length


WORKER_PREFIX = "worker-"


class Spool:
    @classmethod
    def of_worker(cls, directory: str | Path, worker: int | None) -> Spool:
        """The spool a process owns: SPOOL_DIR itself, or SPOOL_DIR/worker-N."""
        base = Path(directory)
        return cls(base if worker is None else base / f"{WORKER_PREFIX}{worker}")

    @classmethod
    def family(cls, directory: str | Path) -> list[Spool]:
        """SPOOL_DIR's spool and every worker's, for reports."""
        base = Path(directory)
        workers = sorted(base.glob(f"{WORKER_PREFIX}*")) if base.is_dir() else []
        return [cls(base), *(cls(p) for p in workers if p.is_dir() and _worker_number(p) >= 0)]

    @classmethod
    def orphans(cls, directory: str | Path, worker: int | None, workers: int) -> list[Spool]:
        """Spools no running process owns, for the single process or worker 0
        to adopt: with WORKERS=1 every worker's; with WORKERS=N, SPOOL_DIR's
        own and those of workers numbered N or above."""
        if worker not in (None, 0):
            return []
        base, *numbered = cls.family(directory)
        if worker is None:
            return numbered
        return [base] + [s for s in numbered if _worker_number(s.directory) >= workers]

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.pending_dir = self.directory / "pending"
        self.dead_dir = self.directory / "dead"
        self.revoke_dir = self.directory / "revoke"

    def _ensure(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def problem(self) -> str | None:
        """Why the spool could not take a file now, by a cheap look (no write):
        a directory gone or replaced, not writable, or a full disk."""
        for directory in (self.pending_dir, self.dead_dir, self.revoke_dir):
            if not directory.is_dir():
                return f"{directory} is missing"
            if not os.access(directory, os.W_OK):
                return f"{directory} is not writable"
        space = os.statvfs(self.pending_dir)
        if space.f_bavail * space.f_frsize < MIN_FREE:
            return f"less than {MIN_FREE // (1 << 20)} MiB free on {self.pending_dir}"
        return None

    def check_writable(self) -> None:
        """Raise OSError unless every spool directory can take a durable file."""
        for directory in (self.pending_dir, self.dead_dir, self.revoke_dir):
            probe = self._ensure(directory) / f".probe-{os.getpid()}"
            _write_durably(probe, [b"probe"])
            probe.unlink()

    def save_pending(self, envelopes: list[Envelope]) -> list[OSError | None]:
        """Spool messages to replay (shutdown): all in one batch file, written,
        fsynced once, renamed, and the directory fsynced (one file per message
        took one disk flush each: seconds per thousand). If the batch file
        cannot be written, one file per message. Returns, for each envelope,
        None (it is on disk) or the error that kept it out."""
        if not envelopes:
            return []
        path = self._ensure(self.pending_dir) / f"batch-{uuid.uuid4()}.msg"
        try:
            _write_durably(path, _batch(envelopes))
        except OSError as error:
            log.error("[spool] could not write %s (%r): one file per message", path, error)
            path.with_suffix(".tmp").unlink(missing_ok=True)
            return self.save_pending_each(envelopes)
        return [None] * len(envelopes)

    def save_pending_each(self, envelopes: list[Envelope]) -> list[OSError | None]:
        """Spool each message in a durable file of its own (slow: see save_pending)."""
        results: list[OSError | None] = []
        for envelope in envelopes:
            try:
                path = self._ensure(self.pending_dir) / f"{envelope.id}.msg"
                _write_durably(path, [_encode(envelope, None)])
                results.append(None)
            except OSError as error:
                results.append(error)
        return results

    def save_dead(self, envelope: Envelope, reason: str) -> Path:
        path = self._ensure(self.dead_dir) / f"{envelope.id}.msg"
        _write_durably(path, [_encode(envelope, reason)])
        return path

    def adopt(self, other: Spool) -> int:
        """Move `other`'s waiting messages and revokes into this spool (same
        file system: each a rename); return how many files moved."""
        moved = 0
        for source, target in (
            (other.pending_dir, self.pending_dir),
            (other.revoke_dir, self.revoke_dir),
        ):
            if not source.is_dir():
                continue
            names = [
                p
                for p in source.iterdir()
                if not p.name.endswith(".tmp") and not p.name.startswith(".")
            ]
            for path in names:
                os.replace(path, self._ensure(target) / path.name)
                moved += 1
            if names:
                _fsync_directory(target)
                _fsync_directory(source)
        return moved

    def pending(self) -> Iterator[tuple[Path, Envelope]]:
        """Spooled messages to replay, oldest first, each with the file that
        holds it (a batch file holds many); unreadable files are moved to dead/."""
        if not self.pending_dir.is_dir():
            return
        for path in sorted(self.pending_dir.glob("*.msg"), key=lambda p: p.stat().st_mtime):
            try:
                found = [_decode(record)[0] for record in _records(path.read_bytes())]
            except (OSError, ValueError, KeyError, TypeError) as error:
                log.error("[spool] unreadable spool file %s (%s): moved to dead/", path, error)
                os.replace(path, self._ensure(self.dead_dir) / (path.name + ".unreadable"))
                continue
            for envelope in found:
                yield path, envelope

    def dead(self) -> list[tuple[Path, str]]:
        """Dead letters with their reasons."""
        if not self.dead_dir.is_dir():
            return []
        found = []
        for path in sorted(self.dead_dir.iterdir()):
            try:
                reason = _decode(path.read_bytes())[1] or "?"
            except (OSError, ValueError, KeyError, TypeError):
                reason = "unreadable spool file"
            found.append((path, reason))
        return found

    def counts(self) -> tuple[int, int]:
        """(pending, dead) message counts."""
        pending = 0
        for path in self.pending_dir.glob("*.msg") if self.pending_dir.is_dir() else ():
            try:
                pending += sum(1 for _ in _records(path.read_bytes()))
            except (OSError, ValueError):
                pending += 1  # unreadable: replay moves it to dead/
        return pending, len(self.dead())

    # Revokes ------------------------------------------------------------------

    def save_revoke(self, message_id: uuid.UUID) -> None:
        path = self._ensure(self.revoke_dir) / str(message_id)
        _write_durably(path, [])

    def revokes(self) -> list[uuid.UUID]:
        if not self.revoke_dir.is_dir():
            return []
        found = []
        for path in self.revoke_dir.iterdir():
            try:
                found.append(uuid.UUID(path.name))
            except ValueError:
                continue  # a temporary or foreign file
        return found

    def forget_revokes(self, message_ids: list[uuid.UUID]) -> None:
        for message_id in message_ids:
            (self.revoke_dir / str(message_id)).unlink(missing_ok=True)
