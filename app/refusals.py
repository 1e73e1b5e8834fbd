"""Rows the database refuses: which message a refusal is about, and whether
the message is the cause (poison) or the database is (it refuses every row).

A refusal is any failed write that is not about the connection, the server
or its disk (db_errors.classify): a value PostgreSQL will not take, an index entry
too large for an operator's index (54000), an operator's trigger that raises
for one row (P0001), whatever its class; but also a dropped column or a
trigger that raises for every row. The two look alike in one failed write.
So a refused batch is halved until one message is refused alone (the pieces
before it commit: other mail goes on). That message is poison, and goes to
the dead letters with the reason, only when the database takes other rows
while it refuses this one: a benign twin of it (same envelope, a few bytes
of content) taken in the same transaction in which the message is refused
(rolled back), or, if the twin is refused too, other mail committing before
the message is refused alone again, the same way (SQLSTATE). Until
then it is held aside, out of the batches. While messages are refused alone
with no commit between them, the database refuses rows: nothing is
dead-lettered, the rest is retried after a pause, held messages are probed
while idle, and the writer says `refusing` (durable mail gets 451, /readyz
says why) until a commit.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable

from . import db, db_batch, db_errors
from .model import ParsedMail, Prepared
from .queued import Item, prepared_of

log = logging.getLogger("app.store")

PAUSE_FIRST, PAUSE_MAX = 0.05, 2.0  # seconds between retries while every row is refused
POISON, REFUSED_TOO, TAKEN = "poison", "refused too", "taken"  # a message beside its twin


def _kind(error: BaseException) -> str:
    """What a refusal was, to tell the same refusal again: SQLSTATE or class."""
    return getattr(error, "sqlstate", None) or type(error).__name__


TWIN_RAW = b"Subject: twin\r\n\r\nA benign twin of a refused message (rolled back).\r\n"


def benign_twin(prepared: Prepared) -> Prepared:
    """`prepared` with fresh ids and a few bytes of plain content: what the
    database takes unless it refuses the envelope itself, or every row."""
    envelope = prepared.envelope
    ids = envelope.make_ids(1 + len(envelope.recipients))
    twin = dataclasses.replace(
        envelope, id=ids[0], row_ids=tuple(ids[1:]), raw=TWIN_RAW, trace_length=0
    )
    return Prepared(twin, ParsedMail("twin", "", "", "", (), None, (), "none"), prepared.auth)


class Refusals:
    """The writer's refused messages: held ones, and what the refusals say."""

    def __init__(
        self,
        pool: db.Pool,
        commit: Callable[[list[Item]], Awaitable[BaseException | None]],
        dead: Callable[[Item, str], object],
        live: Callable[[list[Item]], list[Item]],
    ) -> None:
        self._pool = pool
        self._commit = commit  # None: committed; else the refusal (outages retried inside)
        self._dead = dead  # set a message aside as a dead letter
        self._live = live  # the messages of a list still owed (abandoned ones revoked)
        self.held: list[Item] = []
        self.commits = 0  # batches of mail committed so far
        self._alone = 0  # messages refused alone since the last commit
        self.refusing: str | None = None  # why the database seems to refuse every row
        self._pause = PAUSE_FIRST

    def committed(self) -> None:
        """A batch of mail committed: the database takes rows."""
        self.commits += 1
        self._alone = 0
        self._pause = PAUSE_FIRST
        if self.refusing is not None:
            log.warning("[store] the database takes mail again")
            self.refusing = None

    async def isolate(self, batch: list[Item], refusal: BaseException) -> list[Item]:
        """`batch` was refused: halve it until one message is refused alone
        (the pieces before it commit), hold or dead-letter that message, and
        go on with the rest. Returns what is left when the database seems to
        refuse every row: the caller writes it again after `pause()`."""
        batch = self._live(batch)
        while batch:
            rest: list[Item] = []
            refused = True  # `batch` itself was refused, not only inferred to hold the refusal
            while len(batch) > 1:
                half = len(batch) // 2
                error = await self._commit(batch[:half])
                if error is None:  # the refusal is in the other half
                    batch, refused = self._live(batch[half:]), False
                else:
                    refusal, rest, batch = error, batch[half:] + rest, self._live(batch[:half])
                    refused = len(batch) == half
            if batch and not refused:
                # The database may take it now (an operator's fix landed meanwhile):
                # only a refusal of the message alone tells it is the cause.
                error = await self._commit(batch)
                batch, refusal = ([], refusal) if error is None else (batch, error)
            if batch:
                await self._refused_alone(batch[0], refusal)
            batch = self._live(rest)
            if not batch or self.refusing is not None:
                return batch
            error = await self._commit(batch)
            if error is None:
                return []
            refusal = error
        return []

    async def _refused_alone(self, item: Item, refusal: BaseException) -> None:
        reason, kind = db_errors.describe(refusal), _kind(refusal)
        again = item.refused_at is not None and self.commits > item.refused_at
        beside = POISON if again and item.refusal == kind else await self._beside_twin(item)
        if beside == POISON:  # refused while the database takes other rows
            self._dead(item, reason)
            return
        if beside == TAKEN and await self._commit([item]) is None:
            return  # the refusal has passed (a race with partition upkeep, say): written
        item.refused_at, item.refusal = self.commits, kind
        item.held = True
        self.held.append(item)
        self._alone += 1
        log.warning(
            "[store] message %s refused by the database (%s): held aside, tried again "
            "once other mail commits",
            item.envelope.id,
            reason,
        )
        if self._alone >= 2 and self.refusing is None:
            self.refusing = reason
            log.error(
                "[store] the database refuses every message (%s): retrying, nothing is set "
                "aside; durable mail gets 451 until it takes mail again",
                reason,
            )

    async def _beside_twin(self, item: Item) -> str:
        """What the database does with `item` beside a benign twin of it (rolled
        back): refuses it alone (POISON), refuses both (REFUSED_TOO), or now
        takes both (TAKEN)."""
        prepared = prepared_of(item)
        try:
            refused = await db_batch.refused_beside(self._pool, prepared, benign_twin(prepared))
        except Exception as error:
            log.info("[store] the twin of %s was refused too: %r", item.envelope.id, error)
            return REFUSED_TOO
        return POISON if refused else TAKEN

    def take(self, probe: bool = False) -> list[Item]:
        """Held messages to try again: those refused before the last commit,
        or (`probe`, while every row is refused) all of them."""
        self.prune()
        due = [item for item in self.held if probe or self._due(item)]
        if due:
            self.held = [item for item in self.held if not (probe or self._due(item))]
            for item in due:
                item.held = False
        return due

    def _due(self, item: Item) -> bool:
        return item.refused_at is not None and item.refused_at < self.commits

    def prune(self) -> None:
        """Drop held messages whose sender gave up (451), revoking them like
        any abandoned message, and those no longer owed."""
        self.held = self._live(self.held)

    def pause(self) -> float:
        """Seconds to wait before writing again while every row is refused."""
        pause, self._pause = self._pause, min(self._pause * 2, PAUSE_MAX)
        return pause

    def nothing_to_test(self) -> None:
        """Nothing is left to write: a refusing database can only be told by
        the next message, so accept mail again."""
        self.prune()
        if self.refusing is not None and not self.held:
            log.warning("[store] no refused message left to try: accepting mail again")
            self.refusing = None
            self._alone = 0
