"""Webhooks, the writer's side: which stored rows become events, and their payloads.

The batch writer writes through `Outbox.insert_batch`, which adds the
outbox insert of the batch to the transaction that stores the mail, so an
event exists exactly when its message does. It answers from a snapshot of the
addresses that have an endpoint (refreshed by the sender every
WEBHOOK_POLL seconds): with no endpoint, nothing is built and the batch is
the one statement it always was. The insert joins the endpoints table
itself, so the snapshot only decides which payloads are worth building.

The payload follows the Standard Webhooks shape: `type`, `timestamp`,
`data`; it is built once here and sent byte for byte on every attempt.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from . import codes, db, db_batch, db_dedup, db_errors
from .db_webhooks import INSERT_OUTBOX, MESSAGE_RECEIVED
from .model import Prepared
from .policy import address_spellings

log = logging.getLogger("app.webhooks")


@dataclasses.dataclass(frozen=True)
class Subscribed:
    """Who has an endpoint for new mail: every address, or these."""

    everyone: bool = False
    addresses: frozenset[str] = frozenset()

    @classmethod
    def of(cls, rows: Iterable[str | None]) -> Subscribed:
        listed = list(rows)
        return cls(None in listed, frozenset(a for a in listed if a is not None))

    def wants(self, address: str) -> bool:
        return self.everyone or address in self.addresses

    def __bool__(self) -> bool:
        return self.everyone or bool(self.addresses)


def codes_and_link(prepared: Prepared) -> codes.Extracted:
    """The message's codes and verification link, as its parse read them
    (app/codes.py, off the writer's path: ParsedMail.codes, verify_link)."""
    parsed = prepared.parsed
    return codes.Extracted(parsed.codes, parsed.verify_link)


def payload(prepared: Prepared, row_id: Any, owner: str, found: codes.Extracted) -> str:
    """The JSON body of a message.received event for one recipient's row (pure)."""
    envelope, parsed = prepared.envelope, prepared.parsed
    received = envelope.received_at.isoformat()
    data = {
        "id": str(row_id),
        "address": owner,
        "from": parsed.header_from or envelope.mail_from,
        "envelope_from": envelope.mail_from,
        "subject": parsed.subject,
        "received_at": received,
        "size": len(envelope.raw) - envelope.trace_length,
        "message_id": parsed.message_id,
        "codes": list(found.codes),
        "verify_link": found.verify_link,
        "attachments": len(parsed.attachments),
    }
    body = {"type": MESSAGE_RECEIVED, "timestamp": received, "data": data}
    return json.dumps(body, separators=(",", ":"))


class Outbox:
    """The snapshot of subscribed addresses, and the outbox rows of a batch."""

    def __init__(self) -> None:
        # Until the endpoints are first read, every row is a candidate (the
        # insert's join decides): mail of the first moments is not missed.
        self.subscribed = Subscribed(everyone=True)
        self._read = False
        self.wake: Callable[[], None] | None = None  # the sender's: after a commit with events

    def update(self, rows: Iterable[str | None]) -> None:
        """Swap in a new snapshot (the sender reads the endpoints table)."""
        new = Subscribed.of(rows)
        if new != self.subscribed or not self._read:
            log.info(
                "[webhooks] subscribed: %s, %d addresses",
                "every address" if new.everyone else "not every address",
                len(new.addresses),
            )
        self.subscribed, self._read = new, True

    def wanted(self, batch: Sequence[Prepared]) -> bool:
        """Does someone subscribe to a row of `batch`? (Without making its events.)"""
        subscribed = self.subscribed
        return bool(subscribed) and any(
            subscribed.wants(owner) for prepared in batch for owner in prepared.envelope.recipients
        )

    def statement(self, batch: Sequence[Prepared]) -> tuple[str, list[Any]] | None:
        """The outbox insert for the rows of `batch` someone subscribed to;
        None (nothing to run) when no row is."""
        subscribed = self.subscribed
        if not subscribed:
            return None
        ids: list[Any] = []
        owners: list[str] = []
        bodies: list[str] = []
        for prepared in batch:
            envelope = prepared.envelope
            found: codes.Extracted | None = None
            for row_id, owner in zip(envelope.row_ids, envelope.recipients, strict=True):
                if subscribed.wants(owner):
                    if found is None:
                        found = codes_and_link(prepared)
                    ids.append(row_id)
                    owners.append(owner)
                    bodies.append(payload(prepared, row_id, owner, found))
        spellings = ["\n".join(address_spellings([owner])) for owner in owners]
        return (INSERT_OUTBOX, [ids, owners, bodies, spellings]) if ids else None

    async def insert_batch(
        self,
        pool: db.Pool,
        batch: Sequence[Prepared],
        revoke: Sequence[uuid.UUID],
        dedup_window: float = 0,
        seen: db_dedup.Seen = db_dedup.NOTHING_SEEN,
    ) -> None:
        """db_batch.insert_batch, with the events of the rows it keeps (a resend is
        not stored: app/db_dedup.py) in its transaction. Should PostgreSQL
        refuse the events (a broken outbox table), the mail is written and
        those events are lost, said loudly: mail matters more than its
        notification. A refusal of the mail itself is raised, events untouched."""
        if not self.wanted(batch):
            await db_batch.insert_batch(pool, batch, revoke, dedup_window, seen=seen)
            return
        refused = await db_batch.insert_batch(
            pool, batch, revoke, dedup_window, self.statement, seen
        )
        if refused is not None:
            log.error(
                "[webhooks] the outbox refused the events of %d messages (%s): "
                "their mail is stored, those events are not",
                len(batch),
                db_errors.describe(refused),
            )
            return
        if self.wake is not None:
            self.wake()  # the sender looks at once
