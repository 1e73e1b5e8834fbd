"""Safekeeping: the writer's use of the spool (app/spool.py is the files).

Dead letters (a message the database refuses: app/refusals.py), revokes
(ids owed a delete) and, at shutdown, the acknowledged messages the writer
could not write (replayed at the next start). A file the spool cannot take
keeps its message in memory, and new mail gets 451 (`error` is set) until
the spool takes files again; nothing accepted is dropped.
"""

from __future__ import annotations

import collections
import logging
import uuid
from collections.abc import Callable
from pathlib import Path

from . import metrics
from .queued import Item, WriterStats, with_verdict
from .spool import Spool

log = logging.getLogger("app.store")


class Safekeeping:
    def __init__(self, spool: Spool, release: Callable[[Item], None], stats: WriterStats) -> None:
        self.spool = spool
        self._release = release  # the message is safe: tell its waiter
        self._stats = stats
        self.error: str | None = None  # why the spool cannot be written, if so
        # Dead letters the spool could not take yet (retried each writer cycle).
        self.unsaved_dead: list[tuple[Item, str]] = []
        # Abandoned after a write that may have committed: deleted with the next write.
        self.revokes: list[uuid.UUID] = []
        # Spool files being replayed: how many of their messages are not yet safe.
        self._replaying: collections.Counter[Path] = collections.Counter()

    def save_dead(self, item: Item, reason: str) -> bool:
        """Set `item` aside on disk; if the spool fails, keep it here and refuse new mail."""
        try:
            path = self.spool.save_dead(with_verdict(item), reason)
        except OSError as error:
            self.failed(error)
            self.unsaved_dead.append((item, reason))
            return False
        log.error(
            "[store] message %s rejected by the database (%s); kept in %s",
            item.envelope.id,
            reason,
            path,
        )
        self._stats.dead_letters += 1
        metrics.DEAD_LETTERS.inc()
        self._release(item)
        return True

    def unsaved(self, item: Item) -> bool:
        return any(item is waiting for waiting, _ in self.unsaved_dead)

    def watch(self) -> None:
        """The periodic look at the spool (a cheap one; `check` probes it with
        a real file while it is needed): a spool that could not take a file
        means 451 for new mail before anything accepted depends on it."""
        problem = self.spool.problem()
        if problem is not None:
            self.failed(OSError(problem))
        elif self.error is not None:
            self.check(needed=False)

    def check(self, needed: bool) -> None:
        """Retry the dead letters the spool could not take, and, while it may
        be `needed` (a database outage: instant mode keeps taking mail into
        memory) or is known broken, check that it can take a file: new mail
        gets 451 while it cannot."""
        unsaved, self.unsaved_dead = self.unsaved_dead, []
        for index, (item, reason) in enumerate(unsaved):
            if not self.save_dead(item, reason):  # it was put back
                self.unsaved_dead += unsaved[index + 1 :]
                return
        if self.error is None and not needed:
            return
        try:
            self.spool.check_writable()
        except OSError as error:
            self.failed(error)
            return
        if self.error is not None:
            log.warning("[store] the spool is writable again: accepting mail")
            self.error = None

    def failed(self, error: OSError) -> None:
        if self.error is None:
            log.error(
                "[store] cannot write the spool (%r): refusing new mail with 451 "
                "until it is writable; nothing accepted is dropped",
                error,
            )
        self.error = repr(error)

    def replaying(self, path: Path) -> None:
        """One more message of spool file `path` is being replayed."""
        self._replaying[path] += 1

    def replayed(self, path: Path) -> None:
        """A message of `path` is safe; the file goes with its last one."""
        self._replaying[path] -= 1
        if self._replaying[path] <= 0:
            del self._replaying[path]
            path.unlink(missing_ok=True)

    def owe_revoke(self, message_id: uuid.UUID) -> None:
        """Owe a delete of `message_id` (its sender was told 451 after a write
        that may have committed), kept on disk until it commits."""
        self.revokes.append(message_id)
        try:
            self.spool.save_revoke(message_id)
        except OSError as error:
            self.failed(error)

    def owe_spooled_revokes(self) -> int:
        """Start-up: owe the revokes an earlier run left on disk; how many."""
        self.revokes += [i for i in self.spool.revokes() if i not in self.revokes]
        return len(self.revokes)

    def revoked(self, message_ids: list[uuid.UUID]) -> None:
        """The first `message_ids` of `revokes` committed: forget them."""
        del self.revokes[: len(message_ids)]
        if message_ids:
            try:
                self.spool.forget_revokes(message_ids)
            except OSError as error:  # a stale revoke file only deletes nothing later
                log.warning("[store] could not remove revoke files: %r", error)

    def spool_left(self, in_flight: list[Item], queued: list[Item]) -> int:
        """Shutdown: spool the acknowledged messages not yet safe (those in
        flight, the dead letters not saved, the held and waiting ones), all at
        once (Spool.save_pending); return how many were spooled."""
        for item in in_flight:
            if item.abandoned and not item.done:
                # No 250 was given, and its write may have committed.
                self.owe_revoke(item.envelope.id)
        items = [*in_flight, *(item for item, _ in self.unsaved_dead), *queued]
        owed = [
            item
            for item in dict.fromkeys(items)  # an item may be listed twice (held, in flight)
            if not (item.done or item.abandoned or item.spool_path is not None)
        ]
        errors = self.spool.save_pending([with_verdict(item) for item in owed])
        spooled = lost = 0
        for item, error in zip(owed, errors, strict=True):
            if error is not None:
                lost += 1
                log.error("[store] could not spool message %s: %r", item.envelope.id, error)
                continue
            spooled += 1
            self._release(item)
        metrics.SPOOLED.inc(spooled)
        if spooled:
            log.warning(
                "[store] database unavailable at shutdown: spooled %d messages to %s",
                spooled,
                self.spool.pending_dir,
            )
        if lost:
            metrics.LOST.inc(lost)
            log.error("[store] %d acknowledged messages could not be kept", lost)
        return spooled
