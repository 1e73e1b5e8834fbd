"""A message in the writer's hands: the record the writer's parts share
(store.py batches and commits it, refusals.py holds it aside, safekeeping.py
puts it on disk)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from pathlib import Path

from .model import Envelope, Prepared
from .parse import EMPTY

log = logging.getLogger("app.store")


@dataclasses.dataclass(eq=False)
class Item:
    envelope: Envelope
    prepared: asyncio.Future[Prepared]
    committed: asyncio.Future[None] | None = None  # durable mode: the 250 waits on it
    spool_path: Path | None = None  # replayed from this spool file
    enqueued: float = dataclasses.field(default_factory=time.monotonic)
    done: bool = False  # committed, on disk, or dropped after a 451: not ours to keep
    # The writer's commit count when the database last refused this message
    # alone (app/refusals.py); None: never refused.
    refused_at: int | None = None
    refusal: str = ""  # how it was refused then: SQLSTATE, or the error's class
    held: bool = False  # set aside after a refusal, out of the batches

    @property
    def abandoned(self) -> bool:
        """The sender was told 451 (its durable wait gave up)."""
        return self.committed is not None and self.committed.cancelled()


def prepared_of(item: Item) -> Prepared:
    """The finished preparation of `item`."""
    prepared = item.prepared
    if not prepared.cancelled() and prepared.exception() is None:
        return prepared.result()
    # A preparation never raises; if one does, or was cancelled, store it raw.
    log.error("[store] preparing %s failed: storing it unparsed", item.envelope.id)
    return Prepared(item.envelope, EMPTY, None)


def with_verdict(item: Item) -> Envelope:
    """The envelope to put on disk: with its sender-authentication verdict when
    the checks have finished (a replay need not, and later cannot, redo them)."""
    prepared = item.prepared
    if prepared.done() and not prepared.cancelled() and prepared.exception() is None:
        return dataclasses.replace(item.envelope, auth=prepared.result().auth)
    return item.envelope


@dataclasses.dataclass
class WriterStats:
    """Totals for the shutdown log line; the metrics carry the rest."""

    rows_written: int = 0
    dead_letters: int = 0
