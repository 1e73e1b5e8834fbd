"""Resend detection: a message stored once when its sender sends it again.

An MTA resends a message when it did not see our 250: the connection died
after our COMMIT (a host killed, a network cut), or a host answered 451
(README "Running on several hosts"). The resend may reach another host.
Each recipient row of a message has a key: SHA-256 of the envelope sender,
the recipient, the Message-ID header and the SHA-256 of the bytes as
received (without our trace line). A message without a Message-ID has no
key (it is always stored).

The keys live in `mail_dedup` (migration 045), claimed in the batch's own
transaction, before its rows are inserted: `INSERT ... ON CONFLICT`, in key
order (no deadlock between hosts). A key claimed by another message less
than DEDUP_WINDOW seconds ago is not taken, and that row is dropped (the
sender still gets 250: the first copy is committed). A concurrent claim of
the same key on another host waits for this transaction, so exactly one
copy wins. A key older than the window is taken over; `prune` deletes them.

A revoked message (its sender was told 451 while its write committed:
app/store.py) gives back its keys, so the resend is stored; unless a resend
was already dropped as its copy (`resent`), in which case the revoke is
skipped and the first copy stays: either way one copy is kept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import uuid
from collections.abc import Sequence

import asyncpg

from .model import Envelope, Prepared

log = logging.getLogger("app.store")

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_MESSAGE_ID = re.compile(rb"^message-id[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)


def message_id(raw: bytes) -> bytes | None:
    """The first Message-ID header's value (unfolded, trimmed), or None."""
    end = _HEADER_END.search(raw)
    match = _MESSAGE_ID.search(raw, 0, end.start() if end else len(raw))
    if match is None:
        return None
    value = b" ".join(match.group(1).split())
    return value or None


def keys(envelope: Envelope) -> list[bytes | None]:
    """One key per recipient row of `envelope` (None: no Message-ID, no key)."""
    raw = envelope.as_received
    found = message_id(raw)
    if found is None:
        return [None] * len(envelope.recipients)
    content = hashlib.sha256(raw).digest()
    common = b"\0".join((envelope.mail_from.lower().encode(), found, content))
    return [
        hashlib.sha256(recipient.lower().encode() + b"\0" + common).digest()
        for recipient in envelope.recipients
    ]


def claims(batch: Sequence[Prepared]) -> dict[bytes, uuid.UUID]:
    """The keys `batch` claims, each for the first message that has it."""
    wanted: dict[bytes, uuid.UUID] = {}
    for prepared in batch:
        for key in keys(prepared.envelope):
            if key is not None:
                wanted.setdefault(key, prepared.envelope.id)
    return wanted


def kept(batch: Sequence[Prepared], won: set[bytes]) -> tuple[list[Prepared], int]:
    """`batch` without the rows whose key it did not win (a message left with
    no row goes whole); and how many rows were dropped."""
    wanted = claims(batch)
    out: list[Prepared] = []
    dropped = 0
    for prepared in batch:
        envelope = prepared.envelope
        rows = [
            (row_id, recipient)
            for row_id, recipient, key in zip(
                envelope.row_ids, envelope.recipients, keys(envelope), strict=True
            )
            if key is None or (key in won and wanted[key] == envelope.id)
        ]
        dropped += len(envelope.recipients) - len(rows)
        if len(rows) == len(envelope.recipients):
            out.append(prepared)
        elif rows:
            smaller = dataclasses.replace(
                envelope,
                row_ids=tuple(r for r, _ in rows),
                recipients=tuple(owner for _, owner in rows),
            )
            out.append(dataclasses.replace(prepared, envelope=smaller))
    return out, dropped


# A key another message claimed within the window stays its (and is marked
# `resent`); an older one, or our own (a retried batch), is ours.
_TAKEN = "(d.raw_id <> excluded.raw_id AND d.seen_at >= now() - make_interval(secs => $3))"
CLAIM = f"""
INSERT INTO mail_dedup AS d (key, raw_id, seen_at)
SELECT c.key, c.raw_id, now()
FROM unnest($1::bytea[], $2::uuid[]) AS c(key, raw_id)
ORDER BY c.key
ON CONFLICT (key) DO UPDATE SET
    raw_id = CASE WHEN {_TAKEN} THEN d.raw_id ELSE excluded.raw_id END,
    seen_at = CASE WHEN {_TAKEN} THEN d.seen_at ELSE excluded.seen_at END,
    resent = {_TAKEN} OR (d.resent AND d.raw_id = excluded.raw_id)
RETURNING key, raw_id
"""

# The keys of revoked messages are given back, unless a resend was dropped
# as a copy of the message: then the message is not revoked (returned).
GIVE_BACK = """
WITH mine AS (
    SELECT key, raw_id, resent FROM mail_dedup WHERE raw_id = ANY($1::uuid[]) FOR UPDATE
), stays AS (
    SELECT DISTINCT raw_id FROM mine WHERE resent
), gone AS (
    DELETE FROM mail_dedup d USING mine m
    WHERE d.key = m.key AND m.raw_id NOT IN (SELECT raw_id FROM stays)
)
SELECT raw_id FROM stays
"""


async def claim(
    conn: asyncpg.Connection,
    batch: Sequence[Prepared],
    revoke: Sequence[uuid.UUID],
    window: float,
) -> tuple[list[Prepared], list[uuid.UUID]]:
    """In the batch's transaction: the rows of `batch` to insert and the
    messages to revoke, after claiming keys and giving back revoked ones."""
    if revoke:
        stays = {r["raw_id"] for r in await conn.fetch(GIVE_BACK, list(revoke))}
        if stays:
            log.warning(
                "[store] %d messages are not revoked: a resend of theirs was dropped as a copy",
                len(stays),
            )
            revoke = [r for r in revoke if r not in stays]
    wanted = claims(batch) if window > 0 else {}
    if not wanted:
        return list(batch), list(revoke)
    rows = await conn.fetch(CLAIM, list(wanted), list(wanted.values()), window)
    won = {r["key"] for r in rows if r["raw_id"] == wanted[r["key"]]}
    out, dropped = kept(batch, won)
    if dropped:
        log.info("[store] %d resent rows were copies of stored ones: not stored again", dropped)
    return out, list(revoke)


async def prune(pool: asyncpg.Pool, window: float) -> int:
    """Delete keys older than the window (any host may; they never conflict)."""
    async with pool.acquire() as conn:
        status = await conn.execute(
            "DELETE FROM mail_dedup WHERE seen_at < now() - make_interval(secs => $1)", window
        )
    return int(status.split()[-1])
