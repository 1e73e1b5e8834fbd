"""An account's own webhooks, with the mail.tm bearer token (README "Webhooks").

`POST /webhooks` {"url": ..., "events": ["message.received"]} adds one for
the token's address and answers its secret, once; `GET /webhooks` lists the
account's own, with their delivery state; `DELETE /webhooks/{id}` removes
one. A token sees and changes only webhooks it made for its own address:
the operator's (`tempmail webhooks add`) and other addresses' are 404.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import db_webhooks, webhooks_net
from ..webhooks_sender import new_secret
from .context import json_response, state
from .mailtm import current_account, error, read_json
from .shapes import violations


def shown(row: dict[str, Any], secret: str | None = None) -> dict[str, Any]:
    """An endpoint as the API shows it (pure); the secret only when just made."""
    body: dict[str, Any] = {
        "id": str(row["id"]),
        "url": row["url"],
        "address": row["address"],
        "events": list(row["events"]),
        "createdAt": row["created_at"].isoformat(),
        "delivered": row.get("delivered", 0),
        "pending": row.get("pending", 0),
        "failures": row.get("failures", 0),
        "lastError": row.get("last_error"),
        "disabled": row.get("disabled_at") is not None,
    }
    if secret is not None:
        body["secret"] = secret
    return body


def events_of(body: dict[str, Any]) -> list[str] | None:
    """The requested event types (default: message.received); None if invalid."""
    events = body.get("events", [db_webhooks.MESSAGE_RECEIVED])
    if not isinstance(events, list) or not events:
        return None
    if not all(isinstance(e, str) and e in db_webhooks.EVENTS for e in events):
        return None
    return list(dict.fromkeys(events))


async def add_webhook(request: Request) -> Response:
    account = await current_account(request)
    if isinstance(account, Response):
        return account
    ctx = state(request)
    body = await read_json(request)
    if body is None:
        return error(400, "Syntax error", request)
    url, events = body.get("url"), events_of(body)
    if not isinstance(url, str) or not url:
        return json_response(violations([("url", "This value should not be blank.")]), 422, True)
    if events is None:
        known = ", ".join(db_webhooks.EVENTS)
        return json_response(violations([("events", f"Known events: {known}.")]), 422, True)
    try:
        await webhooks_net.resolve(url, ctx.settings.webhook_allow_private)
    except webhooks_net.Refused as refused:
        return json_response(violations([("url", str(refused))]), 422, True)
    secret = new_secret()
    limit = ctx.settings.webhook_max_per_address
    async with ctx.pool.acquire() as conn:
        endpoint = await db_webhooks.add_own(conn, url, account.address, events, secret, limit)
        if endpoint is None:
            problem = f"An address may have {limit} webhooks."
            return json_response(violations([("url", problem)]), 422, True)
        rows = await db_webhooks.list_endpoints(conn, account.address)
    row = next(r for r in rows if r["id"] == endpoint)
    return json_response(shown(row, secret), 201)


async def list_webhooks(request: Request) -> Response:
    account = await current_account(request)
    if isinstance(account, Response):
        return account
    async with state(request).pool.acquire() as conn:
        rows = await db_webhooks.list_endpoints(conn, account.address)
    return json_response([shown(row) for row in rows])


async def delete_webhook(request: Request) -> Response:
    account = await current_account(request)
    if isinstance(account, Response):
        return account
    text = request.path_params["id"]
    endpoint = int(text) if text.isdigit() and len(text) < 19 else 0  # a bigint, or none
    async with state(request).pool.acquire() as conn:
        removed = await db_webhooks.remove_endpoint(conn, endpoint, account.address)
    return Response(status_code=204) if removed else error(404, "Not Found", request)


routes = [
    Route("/webhooks", add_webhook, methods=["POST"]),
    Route("/webhooks", list_webhooks, methods=["GET"]),
    Route("/webhooks/{id}", delete_webhook, methods=["DELETE"]),
]
