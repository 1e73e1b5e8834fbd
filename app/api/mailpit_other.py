"""Mailpit's application routes, per address, and the ones a receive-only
service answers as Mailpit does when a feature is off.

- GET /info: Mailpit's AppInformation for this address: its message,
  unread and per-tag counts, its mail's size as DatabaseSize, the API's
  uptime; the database's name, memory and SMTP counters are not the
  address's to know (empty or 0); LatestVersion "disabled" (no call home).
- GET /webui: Mailpit's web UI configuration: the address as Label,
  relay (release) off, SpamAssassin and Chaos off.
- GET /message/{ID}/sa-check: Mailpit registers it only when SpamAssassin
  is enabled; otherwise its file handler answers 404 "File not found".
- html-check and link-check: 400 in text/plain, the form of Mailpit's
  link-check when disabled (link-check would fetch a sender's URLs from
  here; html-check's data set is not carried).
- POST /message/{ID}/release, POST /send, GET|PUT /chaos: this service
  never sends mail: 400 as Mailpit answers with the feature off (send in
  its JSON error form, chaos "Chaos is not enabled").

Every route asks for the address's credentials first, as Mailpit's
authentication comes before its handlers.
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import __version__
from . import queries_mail, queries_tags
from .context import json_response, state
from .mailpit_common import bad_request, mailbox, text

NEVER_SENDS = "this functionality has been disabled: this service receives mail only"
DISABLED = "this functionality has been disabled"


async def info(request: Request) -> Response:
    found = await mailbox(request)
    if isinstance(found, Response):
        return found
    ctx = state(request)
    stats = await queries_mail.mailbox_stats(ctx.pool, found[0])
    uptime = datetime.datetime.now(datetime.UTC) - ctx.started
    runtime = dict.fromkeys(
        ("Memory", "MessagesDeleted", "SMTPAccepted", "SMTPAcceptedSize", "SMTPRejected"), 0
    )
    return json_response(
        {
            "Version": __version__,
            "LatestVersion": "disabled",
            "Database": "",
            "DatabaseSize": int(stats["size"]),
            "Messages": int(stats["total"]),
            "Unread": int(stats["unread"]),
            "Tags": await queries_tags.tag_counts(ctx.pool, found[0]),
            "RuntimeStats": {
                "Uptime": int(uptime.total_seconds()),
                **runtime,
                "SMTPIgnored": 0,
            },
        }
    )


async def webui(request: Request) -> Response:
    found = await mailbox(request)
    if isinstance(found, Response):
        return found
    relay = dict.fromkeys(
        ("SMTPServer", "ReturnPath", "AllowedRecipients", "BlockedRecipients", "OverrideFrom"), ""
    )
    return json_response(
        {
            "Label": found[0],
            "MessageRelay": {
                "Enabled": False,
                **relay,
                "PreserveMessageIDs": False,
                "RecipientAllowlist": "",
            },
            "SpamAssassin": False,
            "ChaosEnabled": False,
            "DuplicatesIgnored": False,
            "HideDeleteAllButton": False,
        }
    )


def answer(response: Callable[[], Response]) -> Callable[[Request], Awaitable[Response]]:
    """A route that answers `response()` to whoever may read the address."""

    async def route(request: Request) -> Response:
        found = await mailbox(request)
        return found if isinstance(found, Response) else response()

    return route


def json_error(message: str) -> Response:
    """Mailpit's httpJSONError: 400, {"Error": message}."""
    return json_response({"Error": message}, 400)


def _off(message: str) -> Callable[[], Response]:
    return lambda: bad_request(message)


DISABLED_ROUTES: list[tuple[str, str, Callable[[], Any]]] = [
    ("GET", "/message/{id}/sa-check", lambda: text("File not found\n", 404)),
    ("GET", "/message/{id}/html-check", _off(DISABLED)),
    ("GET", "/message/{id}/link-check", _off(DISABLED)),
    ("POST", "/message/{id}/release", _off(NEVER_SENDS)),
    ("POST", "/send", lambda: json_error(NEVER_SENDS)),
    ("GET", "/chaos", _off("Chaos is not enabled")),
    ("PUT", "/chaos", _off("Chaos is not enabled")),
]


def routes(prefix: str) -> list[Route]:
    return [
        Route(f"{prefix}/info", info, methods=["GET"]),
        Route(f"{prefix}/webui", webui, methods=["GET"]),
        *(
            Route(f"{prefix}{path}", answer(response), methods=[method])
            for method, path, response in DISABLED_ROUTES
        ),
    ]
