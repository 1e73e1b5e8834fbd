"""The batch writer's batch sizing: what the next batch takes of the mail
waiting (up to BATCH_MAX messages and BATCH_BYTES), which of its messages are
prepared and fit one statement, and how long it lingers under load to fill.

app/store.py's BatchWriter owns the line and the batch; these work on them.
"""

from __future__ import annotations

import asyncio
import collections
from asyncio import FIRST_COMPLETED
from typing import Any

from .queued import Item

BATCH_BYTES = 8 * 1024 * 1024


def take(waiting: collections.deque[Item], batch: list[Item], batch_max: int) -> None:
    """Move waiting mail into `batch`, up to `batch_max` messages and
    BATCH_BYTES of prepared ones (one still being prepared takes no room
    yet: split_ready keeps the statement within BATCH_BYTES)."""
    size = sum(len(item.envelope.raw) for item in batch if item.prepared.done())
    while waiting and len(batch) < batch_max and size < BATCH_BYTES:
        item = waiting.popleft()
        batch.append(item)
        size += len(item.envelope.raw) if item.prepared.done() else 0


def take_prepared(waiting: collections.deque[Item], batch: list[Item], batch_max: int) -> bool:
    """Move the prepared mail waiting behind a batch of `batch_max` messages
    still being prepared into the batch (up to `batch_max` more): it would
    otherwise wait for one of them, and, put back behind them, again."""
    prepared = [item for item in waiting if item.prepared.done()][:batch_max]
    for item in prepared:
        waiting.remove(item)
    batch.extend(prepared)
    return bool(prepared)


async def wait_prepared(
    batch: list[Item],
    waiting: collections.deque[Item],
    in_flight: list[Item],
    batch_max: int,
    arrived: asyncio.Event,
) -> list[Item]:
    """`batch` once one of its items is prepared: until then newly arrived
    mail joins `in_flight` (of which `batch` is a copy), and so does prepared
    mail waiting behind a batch full of mail still being prepared."""
    while batch and not any(item.prepared.done() for item in batch):
        if waiting and len(in_flight) < batch_max:
            take(waiting, in_flight, batch_max)  # newer mail may be ready sooner: take it too
            batch = list(in_flight)
            continue
        if take_prepared(waiting, in_flight, batch_max):
            batch = list(in_flight)
            continue
        arrived.clear()
        arrival = asyncio.ensure_future(arrived.wait())
        futures: list[asyncio.Future[Any]] = [item.prepared for item in batch]
        await asyncio.wait([*futures, arrival], return_when=FIRST_COMPLETED)
        arrival.cancel()
    return batch


def split_ready(batch: list[Item]) -> tuple[list[Item], list[Item]]:
    """The items of `batch` prepared and within BATCH_BYTES (the first
    prepared one always), and the others, for later."""
    ready: list[Item] = []
    later: list[Item] = []
    size = 0
    for item in batch:
        raw = len(item.envelope.raw)
        if item.prepared.done() and (not ready or size + raw <= BATCH_BYTES):
            ready.append(item)
            size += raw
        else:
            later.append(item)
    return ready, later


def linger(delay: float, last_len: int, taken: int, batch_max: int) -> float:
    """Seconds to wait for more mail before writing `taken` messages: under
    load (the last batch had more than one) up to `delay`, scaled by how
    full the last batch was, so one commit carries more messages."""
    if not delay or last_len <= 1 or taken >= batch_max:
        return 0.0
    return delay * min(1.0, last_len / batch_max)
