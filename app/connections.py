"""Connection limits of one worker, and the rate-limited refusal log.

- at most MAX_CONNECTIONS sessions, and MAX_CONNECTIONS_PER_IP from one
  client (an IPv4 address, or an IPv6 /64: one host's whole allocation);
- at most MAX_RECEIVING_BYTES of messages being received at once (declared
  SIZE= reserved at MAIL, actual bytes counted while DATA streams), a
  quarter of it at most for one client, so memory stays bounded however
  many clients send big messages together; when streaming bodies would pass
  it, the transfers that began last give way (they are read to their end,
  dropped and refused with 452), so the oldest ones finish;
- at shutdown, idle sessions are told 421 and closed at once.

Counters exist only for live sessions, so they are bounded by the limits.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from typing import Protocol

from . import metrics, replies

log = logging.getLogger("app.connections")

CLIENT_SHARE = 4  # one client holds at most 1/CLIENT_SHARE of the receive budget...


@dataclasses.dataclass(eq=False)
class Hold:
    """The bytes of one session's message counted against the receive budget."""

    client: str = ""
    size: int = 0
    started: int = 0  # order in which its DATA began; 0: no transfer yet
    declared: bool = False  # reserved from SIZE= at MAIL: admitted, never made to give way
    evicted: bool = False  # gave way to an older transfer: the message is refused


class Goodbye(Protocol):
    @property
    def in_transaction(self) -> bool: ...

    def say_goodbye(self) -> None: ...


class RefusalLog:
    """One line per refusal, at most `per_minute` a minute.

    A flood cannot fill the disk: past the budget lines are only counted,
    and the count is logged when the minute is over. The metric's label is
    the reason alone (bounded); the detail (a domain) goes to the log only.
    """

    def __init__(self, per_minute: int = 60) -> None:
        self.per_minute = per_minute
        self._window_start = time.monotonic()
        self._logged = 0
        self.suppressed = 0
        self.total = 0

    def note(self, ip: str, reason: str, detail: str = "") -> None:
        metrics.REFUSED.labels(reason).inc()
        self.total += 1
        now = time.monotonic()
        if now - self._window_start >= 60:
            if self.suppressed:
                log.warning("[smtp] %d more refusals were not logged", self.suppressed)
            self._window_start, self._logged, self.suppressed = now, 0, 0
        if self._logged < self.per_minute:
            self._logged += 1
            log.warning(
                "[smtp] refused %s: %s%s", ip or "?", reason, f" ({detail})" if detail else ""
            )
        else:
            self.suppressed += 1


class Connections:
    """Live sessions of this worker, with the total, per-client and byte limits."""

    def __init__(
        self, max_total: int, max_per_client: int, max_receiving_bytes: int, message_size: int
    ) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client
        self.max_receiving_bytes = max_receiving_bytes
        # ...but always room for one message of the largest size.
        self.client_share = max(max_receiving_bytes // CLIENT_SHARE, message_size)
        self.receiving_bytes = 0
        self.client_bytes: collections.Counter[str] = collections.Counter()
        self.holds: set[Hold] = set()  # those counting bytes now
        self._transfers = 0
        self.sessions: set[Goodbye] = set()
        self.per_client: collections.Counter[str] = collections.Counter()
        self.closing = False
        self.refusals = RefusalLog()
        self.all_closed = asyncio.Event()  # set once closing and no session is left
        self._transaction_ended = asyncio.Event()

    def admit(self, session: Goodbye) -> str | None:
        """Register `session` (total limit); the refusal reply if it is reached."""
        if self.closing:
            return replies.SHUTTING_DOWN
        if len(self.sessions) >= self.max_total:
            return replies.TOO_MANY_CONNECTIONS
        self.sessions.add(session)
        return None

    def count_client(self, key: str) -> str | None:
        """Count one more session from client `key`; the refusal if over the limit.

        Called at connect, or after the PROXY header when the real client
        address is behind a load balancer.
        """
        if self.per_client[key] >= self.max_per_client:
            return replies.TOO_MANY_FROM_IP
        self.per_client[key] += 1
        return None

    def start_transfer(self, hold: Hold) -> None:
        self._transfers += 1
        hold.started = self._transfers

    def grow(self, hold: Hold, size: int) -> bool:
        """Count `hold` as `size` bytes (never fewer than already counted);
        False, with nothing added, if its client's share or the budget would
        pass. A transfer may take the place of transfers that began after it
        (of its own client, for the client's share), so the oldest finish."""
        change = size - hold.size
        if change <= 0:
            return not hold.evicted
        if hold.evicted:
            return False
        if hold.started:
            client_over = self.client_bytes[hold.client] + change - self.client_share
            if client_over > 0:
                self._evict_after(hold, client_over, hold.client)
            budget_over = self.receiving_bytes + change - self.max_receiving_bytes
            if budget_over > 0:
                self._evict_after(hold, budget_over)
        if (
            self.client_bytes[hold.client] + change > self.client_share
            or self.receiving_bytes + change > self.max_receiving_bytes
        ):
            return False
        self._count(hold, change)
        return True

    def _evict_after(self, hold: Hold, needed: int, client: str | None = None) -> None:
        """Free at least `needed` bytes from transfers that began after `hold`'s
        (of `client` only, if given), the last first."""
        later = sorted(
            (
                other
                for other in self.holds
                if other.started > hold.started
                and other.size
                and not other.declared
                and (client is None or other.client == client)
            ),
            key=lambda other: -other.started,
        )
        for other in later:
            if needed <= 0:
                return
            needed -= other.size
            other.evicted = True
            self.release_hold(other, keep_evicted=True)

    def release_hold(self, hold: Hold, keep_evicted: bool = False) -> None:
        """`hold`'s message is done (or refused): its bytes are free again."""
        self._count(hold, -hold.size)
        if not keep_evicted:
            hold.started, hold.declared, hold.evicted = 0, False, False

    def _count(self, hold: Hold, change: int) -> None:
        hold.size += change
        self.receiving_bytes += change
        self.client_bytes[hold.client] += change
        if self.client_bytes[hold.client] <= 0:
            del self.client_bytes[hold.client]
        if hold.size:
            self.holds.add(hold)
        else:
            self.holds.discard(hold)

    def release(self, session: Goodbye, counted_key: str | None, hold: Hold) -> None:
        self.sessions.discard(session)
        self.release_hold(hold)
        if counted_key is not None:
            self.per_client[counted_key] -= 1
            if self.per_client[counted_key] <= 0:
                del self.per_client[counted_key]
        if self.closing and not self.sessions:
            self.all_closed.set()
        self.transaction_ended()

    def transaction_ended(self) -> None:
        """A session's transaction is over (its reply written, or the session gone)."""
        self._transaction_ended.set()

    async def transactions_ended(self) -> None:
        """Wait until no session is inside a transaction."""
        while any(session.in_transaction for session in self.sessions):
            self._transaction_ended.clear()
            await self._transaction_ended.wait()

    def close_idle(self) -> None:
        """Shutdown: say 421 to every session not inside a transaction, and close it."""
        self.closing = True
        if not self.sessions:
            self.all_closed.set()
        for session in list(self.sessions):
            if not session.in_transaction:
                session.say_goodbye()
