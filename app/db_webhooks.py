"""Webhooks' SQL: the endpoints table (CLI, API) and the outbox (writer, sender).

Locking, so several hosts share one outbox without sending an event twice:
the sender holds its endpoint's row `FOR NO KEY UPDATE SKIP LOCKED` while
it delivers that endpoint's oldest event, in one transaction with the
event's outcome. Another host skips the endpoint meanwhile; a process that
dies mid-delivery loses its connection, PostgreSQL ends the transaction and
the event is taken up again (same webhook-id). The writer's outbox insert
takes only the key-share lock of the foreign key, which that lock does not
block: delivering never holds up mail.
"""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from collections.abc import Sequence
from typing import Any

from .db import Connection, Pool, folded

MESSAGE_RECEIVED = "message.received"
EVENTS = (MESSAGE_RECEIVED,)

ENDPOINT_COLUMNS = (
    "id, url, address, events, created_by, created_at, delivered, failures, given_up, "
    "last_error, last_attempt_at, last_success_at, disabled_at, disabled_reason"
)


async def add_endpoint(
    conn: Connection,
    url: str,
    address: str | None,
    events: Sequence[str],
    secret: str,
    created_by: str = "operator",
) -> int:
    """Store a new endpoint; its id."""
    return int(
        await conn.fetchval(
            "INSERT INTO webhook_endpoints (url, address, events, secret, created_by) "
            "VALUES ($1, $2, $3, $4, $5) RETURNING id",
            url,
            address,
            list(events),
            secret,
            created_by,
        )
    )


async def list_endpoints(conn: Connection, address: str | None = None) -> list[dict[str, Any]]:
    """Every endpoint (or an account's own: `address`, made through the API),
    with the count of events waiting for it."""
    where = "" if address is None else "WHERE e.address = $1 AND e.created_by = 'api'"
    rows = await conn.fetch(
        f"SELECT {', '.join('e.' + c.strip() for c in ENDPOINT_COLUMNS.split(','))}, "
        "(SELECT count(*) FROM webhook_outbox o WHERE o.endpoint_id = e.id) AS pending "
        f"FROM webhook_endpoints e {where} ORDER BY e.id",
        *([] if address is None else [address]),
    )
    return [dict(row) for row in rows]


async def add_own(
    conn: Connection, url: str, address: str, events: Sequence[str], secret: str, limit: int
) -> int | None:
    """An account's new endpoint for its address (the API's), unless the
    address has `limit` of them already (None)."""
    async with conn.transaction():
        # One at a time per address, so two requests cannot both pass the limit.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"webhooks {address}")
        held = await conn.fetchval(
            "SELECT count(*) FROM webhook_endpoints WHERE address = $1 AND created_by = 'api'",
            address,
        )
        if held >= limit:
            return None
        return await add_endpoint(conn, url, address, events, secret, created_by="api")


async def remove_endpoint(conn: Connection, endpoint: int, address: str | None = None) -> bool:
    """Delete an endpoint and its waiting events (an account's own only, with `address`)."""
    if address is None:
        status = await conn.execute("DELETE FROM webhook_endpoints WHERE id = $1", endpoint)
    else:
        status = await conn.execute(
            "DELETE FROM webhook_endpoints WHERE id = $1 AND address = $2 AND created_by = 'api'",
            endpoint,
            address,
        )
    return bool(status != "DELETE 0")


async def remove_all_own(conn: Connection | Pool, address: str) -> None:
    """Delete the webhooks accounts made for `address` (its account is going:
    whoever takes the address next must not have its mail sent to them)."""
    await conn.execute(
        "DELETE FROM webhook_endpoints WHERE address = $1 AND created_by = 'api'", address
    )


async def subscribed(conn: Connection) -> list[str | None]:
    """The addresses with an active endpoint for new mail (None: every address)."""
    rows = await conn.fetch(
        "SELECT DISTINCT address FROM webhook_endpoints "
        "WHERE disabled_at IS NULL AND $1 = ANY(events)",
        MESSAGE_RECEIVED,
    )
    return [row["address"] for row in rows]


# The writer's statement, run in the transaction that stores the mail: one
# event per (message row, endpoint that wants it), in the batch's order.
# An account's own endpoint gets nothing for an address the website lists in
# private_email (its token can no longer read it: app/api/access.py), unless
# the operator made that account. $4: each row's address spellings
# (policy.address_spellings), joined by newlines.
INSERT_OUTBOX = f"""
INSERT INTO webhook_outbox (endpoint_id, email_id, event_type, payload)
SELECT e.id, r.email_id, '{MESSAGE_RECEIVED}', r.payload
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY
    AS r(email_id, address, payload, spellings, n)
JOIN webhook_endpoints e
  ON e.disabled_at IS NULL AND '{MESSAGE_RECEIVED}' = ANY(e.events)
 AND (e.address IS NULL OR e.address = r.address)
WHERE e.created_by <> 'api'
   OR NOT EXISTS (SELECT FROM private_email p
                  WHERE {folded("p.email")} = ANY(string_to_array(r.spellings, chr(10))))
   OR EXISTS (SELECT FROM accounts a WHERE a.address = r.address AND a.by_operator)
ORDER BY r.n, e.id
ON CONFLICT (endpoint_id, email_id) DO NOTHING
"""


async def due_endpoints(conn: Connection, busy: Sequence[int], limit: int) -> list[int]:
    """Endpoints whose oldest event is due, other than the `busy` ones."""
    # Longest due first: by id, endpoints that keep failing (each attempt a
    # whole WEBHOOK_TIMEOUT) could take every turn from one with a higher id.
    rows = await conn.fetch(
        """
        SELECT e.id FROM webhook_endpoints e
        CROSS JOIN LATERAL (
            SELECT o.next_attempt_at FROM webhook_outbox o
            WHERE o.endpoint_id = e.id ORDER BY o.id LIMIT 1
        ) head
        WHERE e.disabled_at IS NULL AND e.id <> ALL($1::bigint[])
          AND head.next_attempt_at <= now()
        ORDER BY head.next_attempt_at, e.id LIMIT $2
        """,
        list(busy),
        limit,
    )
    return [row["id"] for row in rows]


@dataclasses.dataclass(frozen=True)
class Head:
    """An endpoint's oldest event, with what sending it needs."""

    outbox_id: int
    endpoint_id: int
    url: str
    secret: str
    email_id: uuid.UUID
    payload: str
    attempts: int
    created_at: datetime.datetime


async def lock_head(conn: Connection, endpoint: int) -> Head | None:
    """In the caller's transaction: lock the endpoint (skip it if another
    sender holds it) and return its oldest event if that is due."""
    row = await conn.fetchrow(
        """
        WITH e AS (
            SELECT id, url, secret FROM webhook_endpoints
            WHERE id = $1 AND disabled_at IS NULL
            FOR NO KEY UPDATE SKIP LOCKED
        )
        SELECT o.id AS outbox_id, e.id AS endpoint_id, e.url, e.secret, o.email_id,
               o.payload, o.attempts, o.created_at, o.next_attempt_at <= now() AS due
        FROM e JOIN LATERAL (
            SELECT * FROM webhook_outbox WHERE endpoint_id = e.id ORDER BY id LIMIT 1
        ) o ON true
        """,
        endpoint,
    )
    if row is None or not row["due"]:
        return None
    return Head(**{k: row[k] for k in Head.__dataclass_fields__})


async def delivered(conn: Connection, head: Head) -> None:
    await conn.execute("DELETE FROM webhook_outbox WHERE id = $1", head.outbox_id)
    await conn.execute(
        "UPDATE webhook_endpoints SET delivered = delivered + 1, failures = 0, "
        "last_attempt_at = now(), last_success_at = now() WHERE id = $1",
        head.endpoint_id,
    )


async def failed(conn: Connection, head: Head, error: str, retry_in: float | None) -> None:
    """Record a failed attempt: retry in `retry_in` seconds, or (None) drop the event."""
    if retry_in is None:
        await conn.execute("DELETE FROM webhook_outbox WHERE id = $1", head.outbox_id)
    else:
        await conn.execute(
            "UPDATE webhook_outbox SET attempts = attempts + 1, last_error = $2, "
            "next_attempt_at = now() + make_interval(secs => $3) WHERE id = $1",
            head.outbox_id,
            error,
            retry_in,
        )
    await conn.execute(
        "UPDATE webhook_endpoints SET failures = failures + 1, last_error = $2, "
        "last_attempt_at = now(), given_up = given_up + $3 WHERE id = $1",
        head.endpoint_id,
        error,
        int(retry_in is None),
    )


async def disable(conn: Connection, head: Head, reason: str) -> int:
    """The receiver said 410 Gone: send nothing more; drop what waits. Returns
    how many events were dropped."""
    status = await conn.execute(
        "DELETE FROM webhook_outbox WHERE endpoint_id = $1", head.endpoint_id
    )
    dropped = int(status.split()[-1])
    await conn.execute(
        "UPDATE webhook_endpoints SET disabled_at = now(), disabled_reason = $2, "
        "last_error = $2, last_attempt_at = now(), failures = failures + 1, "
        "given_up = given_up + $3 WHERE id = $1",
        head.endpoint_id,
        reason,
        dropped,
    )
    return dropped


async def pending(conn: Connection) -> int:
    """Events waiting in the outbox (all endpoints, all hosts)."""
    return int(await conn.fetchval("SELECT count(*) FROM webhook_outbox"))
