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

Only a copy of an unconfirmed message is a resend: an MTA resends when it
did not see our 250, and a client that sent its next command on the session
after our 250 saw it (app/session.py). Such a message's keys are gathered in
memory (`Confirmations`) and marked `confirmed` (migration 046) just before
the writer's next transaction, committed before its claims (or within
IDLE_PROBE by an empty write): a copy of a confirmed message is a new message, stored, and
takes the key over. A copy in the same batch as a confirmed one is kept too.
A session cut right after our 250 leaves the key unconfirmed: the resend, to
any host, is dropped. A command pipelined behind the message's end (already
buffered when the 250 went out) confirms nothing; what the client sends once
those are read does (with PIPELINING, the next message's content after our
354).

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
from collections.abc import Sequence, Set

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


def holders(
    batch: Sequence[Prepared], confirmed: Set[uuid.UUID] = frozenset()
) -> tuple[dict[bytes, uuid.UUID], set[tuple[uuid.UUID, bytes]]]:
    """Each key's last holder in `batch`, and the (message, key) rows to keep:
    a later message with a key is a copy of the one before it (dropped),
    unless that one was `confirmed`: then it is new and holds the key."""
    holder: dict[bytes, uuid.UUID] = {}
    rows: set[tuple[uuid.UUID, bytes]] = set()
    for prepared in batch:
        message = prepared.envelope.id
        for key in keys(prepared.envelope):
            if key is None:
                continue
            before = holder.get(key)
            if before is None or before == message or before in confirmed:
                holder[key] = message
                rows.add((message, key))
    return holder, rows


def claims(batch: Sequence[Prepared]) -> dict[bytes, uuid.UUID]:
    """The keys `batch` claims, each for its first message."""
    return holders(batch)[0]


def kept(
    batch: Sequence[Prepared], won: set[bytes], confirmed: Set[uuid.UUID] = frozenset()
) -> tuple[list[Prepared], int]:
    """`batch` without the rows that copy an unconfirmed message before them
    (a message left with no row goes whole), and how many rows were dropped.
    A key the batch did not win is an unconfirmed earlier message's: its
    first message in the batch copies that one; a later one after a
    confirmed one is new all the same."""
    rows_kept = holders(batch, confirmed)[1]
    first = claims(batch)
    out: list[Prepared] = []
    dropped = 0
    for prepared in batch:
        envelope = prepared.envelope
        rows = [
            (row_id, recipient)
            for row_id, recipient, key in zip(
                envelope.row_ids, envelope.recipients, keys(envelope), strict=True
            )
            if key is None
            or ((envelope.id, key) in rows_kept and (key in won or first[key] != envelope.id))
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


Confirmation = tuple[uuid.UUID, list[bytes]]  # a message and its keys


@dataclasses.dataclass(frozen=True)
class Seen:
    """For one write: the keys to mark confirmed before its claims, and every
    message whose 250 was confirmed (for copies within its batch)."""

    keys: Sequence[bytes] = ()
    messages: Set[uuid.UUID] = frozenset()


NOTHING_SEEN = Seen()


class Confirmations:
    """Messages whose 250 their client confirmed, until the writer's next
    transaction marks their keys (per process, in memory)."""

    def __init__(self, window: float) -> None:
        self._window = window
        self._keys: dict[uuid.UUID, list[bytes]] = {}

    def __bool__(self) -> bool:
        return bool(self._keys)

    def of(self, envelope: Envelope) -> Confirmation | None:
        """What confirming `envelope` will mark (None: nothing, no key)."""
        found = [key for key in keys(envelope) if key is not None] if self._window > 0 else []
        return (envelope.id, found) if found else None

    def add(self, confirmation: Confirmation) -> None:
        self._keys[confirmation[0]] = confirmation[1]

    def take(self, unwritten: Set[uuid.UUID]) -> tuple[list[uuid.UUID], Seen]:
        """The confirmed messages written already, and what the next write
        is to know (those still queued are marked once their own claim is)."""
        ready = [message for message in self._keys if message not in unwritten]
        keys = [key for message in ready for key in self._keys[message]]
        return ready, Seen(keys, frozenset(self._keys))

    def marked(self, messages: Sequence[uuid.UUID]) -> None:
        for message in messages:
            self._keys.pop(message, None)


# A key another message claimed within the window, never confirmed, stays its
# (and is marked `resent`); an older or confirmed one, or our own (a retried
# batch), is ours (unconfirmed, unless our own was confirmed).
_TAKEN = (
    "(d.raw_id <> excluded.raw_id AND NOT d.confirmed"
    " AND d.seen_at >= now() - make_interval(secs => $3))"
)
CLAIM = f"""
INSERT INTO mail_dedup AS d (key, raw_id, seen_at)
SELECT c.key, c.raw_id, now()
FROM unnest($1::bytea[], $2::uuid[]) AS c(key, raw_id)
ORDER BY c.key
ON CONFLICT (key) DO UPDATE SET
    raw_id = CASE WHEN {_TAKEN} THEN d.raw_id ELSE excluded.raw_id END,
    seen_at = CASE WHEN {_TAKEN} THEN d.seen_at ELSE excluded.seen_at END,
    resent = {_TAKEN} OR (d.resent AND d.raw_id = excluded.raw_id),
    confirmed = d.confirmed AND d.raw_id = excluded.raw_id
RETURNING key, raw_id
"""

# Keys whose message's 250 was confirmed, locked in key order as CLAIM does.
CONFIRM = """
UPDATE mail_dedup SET confirmed = true
WHERE key IN (
    SELECT key FROM mail_dedup WHERE key = ANY($1::bytea[]) AND NOT confirmed
    ORDER BY key FOR UPDATE
)
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


async def mark_confirmed(conn: asyncpg.Connection, keys: Sequence[bytes]) -> None:
    """Mark `keys` confirmed, committed on its own before the batch's
    transaction: in it, a mark held its key while the claims waited for
    another host's, which could hold that host's mark and wait for ours (a
    deadlock; the mark rolled back made the other host drop a new message as
    a resend)."""
    if keys:
        await conn.execute(CONFIRM, list(keys))


async def claim(
    conn: asyncpg.Connection,
    batch: Sequence[Prepared],
    revoke: Sequence[uuid.UUID],
    window: float,
    seen: Seen = NOTHING_SEEN,
) -> tuple[list[Prepared], list[uuid.UUID]]:
    """In the batch's transaction (after `mark_confirmed`): the rows of
    `batch` to insert and the messages to revoke, after giving back revoked
    messages' keys and claiming keys (those of messages `seen` confirmed in
    the batch are new ones)."""
    confirmed = seen.messages
    if revoke:
        stays = {r["raw_id"] for r in await conn.fetch(GIVE_BACK, list(revoke))}
        if stays:
            log.warning(
                "[store] %d messages are not revoked: a resend of theirs was dropped as a copy",
                len(stays),
            )
            revoke = [r for r in revoke if r not in stays]
    wanted = holders(batch, confirmed)[0] if window > 0 else {}
    if not wanted:
        return list(batch), list(revoke)
    rows = await conn.fetch(CLAIM, list(wanted), list(wanted.values()), window)
    won = {r["key"] for r in rows if r["raw_id"] == wanted[r["key"]]}
    out, dropped = kept(batch, won, confirmed)
    if dropped:
        log.info("[store] %d resent rows were copies of stored ones: not stored again", dropped)
    return out, list(revoke)


PRUNE = """
DELETE FROM mail_dedup WHERE key IN (
    SELECT key FROM mail_dedup WHERE seen_at < now() - make_interval(secs => $1)
    FOR UPDATE SKIP LOCKED
)
"""


async def prune(pool: asyncpg.Pool, window: float) -> int:
    """Delete keys older than the window (any host may). A key a batch holds
    (taking it over) is skipped, not waited for: the prune deletes in its
    scan's order, the claims lock in key order, and waiting could deadlock."""
    async with pool.acquire() as conn:
        status = await conn.execute(PRUNE, window)
    return int(status.split()[-1])
