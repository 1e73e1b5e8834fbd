"""Webhooks, the sending side: deliver the outbox, signed, at least once.

Every WEBHOOK_POLL seconds (and at once after a batch with events commits)
the sender refreshes the writer's snapshot of subscribed addresses and
takes the endpoints whose oldest event is due, up to WEBHOOK_CONCURRENCY
at a time. For each it delivers the events in order, each in a transaction
that holds the endpoint's row (app/db_webhooks.py: another host skips it)
and records the outcome: a 2xx deletes the event; 410 Gone disables the
endpoint and drops what waits; any other failure retries the same event,
same `webhook-id`, after an exponential pause (WEBHOOK_RETRY_FIRST doubled
per attempt, at most WEBHOOK_RETRY_MAX), until WEBHOOK_MAX_AGE has passed
since the mail arrived. Events behind a failing one wait: order per
endpoint holds. A crash mid-delivery leaves the event in the outbox, so it
may arrive twice, under the same id (Standard Webhooks receivers dedupe).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import functools
import logging
import os
import random
import time

import httpx
from standardwebhooks import Webhook

from . import db, db_webhooks, metrics, webhooks_net
from .config import Settings
from .tasks import Throttle
from .webhooks_outbox import Outbox

log = logging.getLogger("app.webhooks")

JITTER = 0.1  # of a retry pause, either way: endpoints that failed together spread out


def new_secret() -> str:
    """A fresh endpoint secret in Standard Webhooks' form: whsec_<base64 of 32 bytes>."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode("ascii")


def retry_delay(attempts: int, first: float, longest: float) -> float:
    """Seconds before the next attempt after `attempts` failed ones (1 or more)."""
    pause = min(longest, first * 2 ** min(max(attempts - 1, 0), 40))
    return pause * (1 + random.uniform(-JITTER, JITTER))


def webhook_id(head: db_webhooks.Head) -> str:
    """The event's webhook-id: the same on every attempt (and after a restart)."""
    return f"msg_{head.email_id.hex}_{head.endpoint_id}"


def signed_headers(secret: str, msg_id: str, body: str, now: float) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt sent at `now`."""
    moment = datetime.datetime.fromtimestamp(int(now), datetime.UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now)),
        "webhook-signature": Webhook(secret).sign(msg_id, moment, body),
        "content-type": "application/json",
        "user-agent": "tempmail-webhooks",
    }


class Sender:
    def __init__(self, pool: db.Pool, settings: Settings, outbox: Outbox) -> None:
        self._pool = pool
        self._settings = settings
        self._outbox = outbox
        self._busy: dict[int, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        outbox.wake = self._wake.set
        self._throttle = Throttle()
        self._client: httpx.AsyncClient | None = None  # run()'s

    async def run(self) -> None:
        """Look for due events until cancelled; a failed look is logged and retried."""
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                self._settings.webhook_timeout, connect=self._settings.webhook_connect_timeout
            ),
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment: the address checked is the one used
        )
        try:
            while True:
                self._wake.clear()
                try:
                    await self._look()
                except Exception as error:
                    if self._throttle.due():
                        log.warning("[webhooks] cannot read the outbox, retrying: %r", error)
                try:
                    await asyncio.wait_for(self._wake.wait(), self._settings.webhook_poll)
                except TimeoutError:
                    pass
        finally:
            for task in self._busy.values():
                task.cancel()
            await asyncio.gather(*self._busy.values(), return_exceptions=True)
            await self._client.aclose()

    async def _look(self) -> None:
        async with self._pool.acquire() as conn:
            self._outbox.update(await db_webhooks.subscribed(conn))
            room = self._settings.webhook_concurrency - len(self._busy)
            due = await db_webhooks.due_endpoints(conn, list(self._busy), room) if room else []
            metrics.WEBHOOK_PENDING.set(await db_webhooks.pending(conn))
        for endpoint in due:
            task = asyncio.ensure_future(self._serve(endpoint))
            self._busy[endpoint] = task
            task.add_done_callback(functools.partial(self._done, endpoint))

    def _done(self, endpoint: int, task: asyncio.Task[None]) -> None:
        self._busy.pop(endpoint, None)
        if not task.cancelled() and (error := task.exception()) is not None:
            if self._throttle.due():
                log.warning("[webhooks] delivery to endpoint %d failed: %r", endpoint, error)

    async def _serve(self, endpoint: int) -> None:
        """Deliver the endpoint's due events in order until one fails or none is due."""
        while await self._one(endpoint):
            pass

    async def _one(self, endpoint: int) -> bool:
        """Deliver its oldest event if due and not held elsewhere; True if it went."""
        async with self._pool.acquire() as conn, conn.transaction():
            head = await db_webhooks.lock_head(conn, endpoint)
            if head is None:
                return False
            if _age(head) > self._settings.webhook_max_age:
                # Waited behind a failing one until too old: dropped unsent, or a
                # receiver that never answers would take WEBHOOK_TIMEOUT for each.
                await self._give_up(conn, head, "not sent: older than WEBHOOK_MAX_AGE")
                return True
            body = head.payload.encode()
            headers = signed_headers(head.secret, webhook_id(head), head.payload, time.time())
            assert self._client is not None
            reply = await webhooks_net.post(
                self._client,
                head.url,
                body,
                headers,
                allow_private=self._settings.webhook_allow_private,
                timeout=self._settings.webhook_timeout,
                cap=self._settings.webhook_response_bytes,
            )
            await self._record(conn, head, reply)
            return reply.error is None

    async def _record(
        self, conn: db.Connection, head: db_webhooks.Head, reply: webhooks_net.Reply
    ) -> None:
        settings = self._settings
        if reply.error is None:
            await db_webhooks.delivered(conn, head)
            metrics.WEBHOOK_DELIVERED.inc()
            return
        metrics.WEBHOOK_FAILED.inc()
        if reply.status == 410:
            dropped = await db_webhooks.disable(conn, head, "410 Gone: the receiver asked to stop")
            metrics.WEBHOOK_DROPPED.inc(dropped)
            log.warning("[webhooks] endpoint %d answered 410 Gone: disabled", head.endpoint_id)
            return
        attempts = head.attempts + 1
        delay = retry_delay(attempts, settings.webhook_retry_first, settings.webhook_retry_max)
        if _age(head) + delay > settings.webhook_max_age:
            await self._give_up(conn, head, reply.error, attempts)
        else:
            await db_webhooks.failed(conn, head, reply.error, delay)

    async def _give_up(
        self, conn: db.Connection, head: db_webhooks.Head, why: str, attempts: int = 0
    ) -> None:
        await db_webhooks.failed(conn, head, f"gave up: {why}", None)
        metrics.WEBHOOK_DROPPED.inc()
        log.warning(
            "[webhooks] endpoint %d: event dropped after %d attempts (%s)",
            head.endpoint_id,
            attempts,
            why,
        )


def _age(head: db_webhooks.Head) -> float:
    """Seconds since the event was written (with its mail)."""
    return (datetime.datetime.now(datetime.UTC) - head.created_at).total_seconds()
