"""Command line of webhooks: `webhooks add URL [--address A] [--events E]`,
`webhooks list`, `webhooks remove ID` (README "Webhooks"). A URL that
leads to a private address is refused here already, unless
WEBHOOK_ALLOW_PRIVATE=true. Running services see a change within
WEBHOOK_POLL seconds."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from . import config, db_webhooks, policy, webhooks_net
from .cli_defence import _with_conn as with_conn
from .webhooks_sender import new_secret


def add_parsers(command: Any, actions: Any) -> None:
    """The `webhooks` subcommand, made with __main__'s `command` and `actions`."""
    action = actions(command("webhooks", cmd_webhooks, "manage webhooks (README: Webhooks)"))
    add = action("add")
    add.add_argument("url", help="http:// or https:// URL that receives the events")
    add.add_argument("--address", help="only this address's mail (default: every address)")
    add.add_argument(
        "--events",
        default=db_webhooks.MESSAGE_RECEIVED,
        help=f"comma-separated event types (default and only one: {db_webhooks.MESSAGE_RECEIVED})",
    )
    action("list")
    action("remove").add_argument("id", type=int)


def event_types(text: str) -> list[str] | None:
    """The event types named in `text` (comma-separated); None if one is unknown."""
    named = [part.strip() for part in text.split(",") if part.strip()]
    if not named or any(name not in db_webhooks.EVENTS for name in named):
        return None
    return list(dict.fromkeys(named))


def address_of(text: str | None) -> str | None:
    """The normalised address of --address; raises ValueError if it is not one."""
    if text is None:
        return None
    address = policy.normalize_address(text)
    if policy.address_problem(address) or address.count("@") != 1:
        raise ValueError(f"{text!r} is not an email address")
    return address


def describe(row: dict[str, Any]) -> str:
    """One line of `webhooks list` (pure): delivery state first."""
    if row["disabled_at"] is not None:
        state = f"disabled ({row['disabled_reason']})"
    elif row["failures"]:
        state = "failing"
    else:
        state = "ok"
    shown = [
        str(row["id"]),
        state,
        row["address"] or "*",
        row["url"],
        f"events={','.join(row['events'])}",
        f"delivered={row['delivered']}",
        f"pending={row['pending']}",
        f"failures={row['failures']}",
        f"given_up={row['given_up']}",
        f"by={row['created_by']}",
    ]
    if row["last_success_at"] is not None:
        shown.append(f"last_success={row['last_success_at'].isoformat(timespec='seconds')}")
    if row["last_error"]:
        shown.append(f"last_error={row['last_error']}")
    return "\t".join(shown)


async def _add(settings: config.Settings, args: argparse.Namespace, conn: Any) -> int:
    events = event_types(args.events)
    address = address_of(args.address)
    assert events is not None
    secret = new_secret()
    endpoint = await db_webhooks.add_endpoint(conn, args.url, address, events, secret)
    print(f"added webhook {endpoint} for {address or 'every address'}: {args.url}")
    print(f"secret (shown once; verify the webhook-signature header with it): {secret}")
    return 0


def cmd_webhooks(settings: config.Settings, args: argparse.Namespace) -> int:
    if args.action == "add":
        problem = asyncio.run(_problem(settings, args))
        if problem is not None:
            print(f"error: {problem}", file=sys.stderr)
            return 2

    async def act(conn: Any) -> int:
        if args.action == "add":
            return await _add(settings, args, conn)
        if args.action == "remove":
            if not await db_webhooks.remove_endpoint(conn, args.id):
                print(f"error: no webhook {args.id}", file=sys.stderr)
                return 1
            print(f"removed webhook {args.id}")
            return 0
        for row in await db_webhooks.list_endpoints(conn):
            print(describe(row))
        return 0

    return asyncio.run(with_conn(settings, act))


async def _problem(settings: config.Settings, args: argparse.Namespace) -> str | None:
    """What is wrong with `webhooks add`'s arguments, before any database work."""
    if event_types(args.events) is None:
        known = ", ".join(db_webhooks.EVENTS)
        return f"--events: unknown event type in {args.events!r} (known: {known})"
    try:
        address_of(args.address)
        await webhooks_net.resolve(args.url, settings.webhook_allow_private)
    except (ValueError, webhooks_net.Refused) as error:
        return str(error)
    return None
