"""Command line of the inbound defence: `rules add|list|remove|test`,
`pause [--reason]`, `resume`. Every change reaches running services at once
(NOTIFY on the lists channel)."""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import sys
from pathlib import Path
from typing import Any

from . import config, db, db_connect, db_defence, embedded, pause, rules
from .parse import parse

RULE_OPTIONS = (
    ("--recipient", "recipient", "glob on the envelope recipient, e.g. '*@example.com'"),
    ("--sender", "sender", "glob on the envelope sender ('' is the null sender)"),
    ("--client", "client", "the client's network, e.g. 192.0.2.0/24"),
    ("--subject", "subject_regex", "RE2 regex on the decoded Subject"),
    ("--reply", "reply", "reject: the SMTP reply, e.g. '550 5.7.1 No thanks'"),
    ("--note", "note", "why the rule exists"),
)


def add_parsers(
    command: Any, actions: Any, run_rules: Any, run_pause: Any, run_resume: Any
) -> None:
    """The `rules`, `pause` and `resume` subcommands, made with __main__'s
    `command` and `actions` (so they take the common options too)."""
    rule_action = actions(command("rules", run_rules, "manage the rules table (README: Defence)"))
    add = rule_action("add")
    add.add_argument("--action", dest="rule_action", choices=rules.ACTIONS, required=True)
    add.add_argument("--priority", type=int, default=100, help="lower first (default 100)")
    for flag, dest, text in RULE_OPTIONS:
        add.add_argument(flag, dest=dest, help=text)
    add.add_argument("--header", nargs=2, metavar=("NAME", "REGEX"), help="a header's value")
    add.add_argument("--size-min", type=int, help="bytes, inclusive")
    add.add_argument("--size-max", type=int, help="bytes, inclusive")
    add.add_argument("--has-attachments", choices=("yes", "no"))
    rule_action("list")
    rule_action("remove").add_argument("id", type=int)
    test = rule_action("test")
    test.add_argument("file", help="the message (.eml)")
    test.add_argument("--client", required=True, help="the client's address")
    test.add_argument("--sender", help="envelope sender (default: the From address)")
    test.add_argument("--to", action="append", help="envelope recipient (default: To, Cc)")
    stop = command("pause", run_pause, "stop receiving on every host (421 4.3.2)")
    stop.add_argument("--reason", default="", help="said in the 421 reply")
    command("resume", run_resume, "receive again")


def rule_values(args: argparse.Namespace) -> dict[str, Any]:
    """The new rule's column values from the command line."""
    values: dict[str, Any] = {
        "action": args.rule_action,
        "priority": args.priority,
        "size_min": args.size_min,
        "size_max": args.size_max,
        "has_attachments": None if args.has_attachments is None else args.has_attachments == "yes",
    }
    for _, dest, _ in RULE_OPTIONS:
        values[dest] = getattr(args, dest)
    if args.header:
        values["header_name"], values["header_regex"] = args.header
    return values


async def _with_conn(settings: config.Settings, act: Any) -> int:
    from .db_schema import install_schema

    where = db_connect.route(settings, embedded.database_url(settings))
    conn = await db_connect.connect_session(where)
    try:
        await install_schema(conn)
        return int(await act(conn))
    finally:
        await conn.close()


def cmd_rules(settings: config.Settings, args: argparse.Namespace) -> int:
    if args.action == "test":
        return asyncio.run(test_rules(settings, args, Path(args.file).read_bytes()))
    values = rule_values(args) if args.action == "add" else {}
    if values:
        try:
            rules.compile_rule(values)  # a broken rule never reaches the table
        except rules.RuleError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2

    async def act(conn: Any) -> int:
        if args.action == "add":
            print(f"added rule {await db_defence.add_rule(conn, values)}")
        elif args.action == "remove":
            if not await db_defence.remove_rule(conn, args.id):
                print(f"error: no rule {args.id}", file=sys.stderr)
                return 1
            print(f"removed rule {args.id}")
        else:
            for row in await db_defence.list_rules(conn):
                print(describe_row(row))
        return 0

    return asyncio.run(_with_conn(settings, act))


def describe_row(row: dict[str, Any]) -> str:
    shown = [f"{row['id']}\tpriority {row['priority']}\t{row['action']}"]
    for name in rules.COLUMNS[2:]:
        if name not in ("action", "priority", "active") and row.get(name) is not None:
            shown.append(f"{name}={row[name]}")
    if row.get("active") is False:
        shown.append("(inactive)")
    return "\t".join(shown)


def rule_steps(
    raw: bytes, client: str, sender: str | None, to: list[str] | None
) -> tuple[str, list[tuple[str, rules.Facts]]]:
    """(sender, [(SMTP step, what is known there)]) for a message from `client`."""
    parsed = parse(raw)
    if sender is None:
        sender = email.utils.parseaddr(parsed.header_from)[1]
    recipients = tuple(to or (email.utils.parseaddr(t)[1] for t in parsed.header_to))
    data = rules.Facts(
        client,
        sender,
        recipients,
        rules.header_fields(raw),
        parsed.subject,
        len(raw),
        bool(parsed.attachments),
        rules.DATA,
    )
    steps = [("MAIL", rules.Facts(client=client, sender=sender))]
    steps += [
        (f"RCPT <{r}>", rules.Facts(client, sender, (r,), step=rules.RCPT)) for r in recipients
    ]
    return sender, [*steps, ("end of DATA", data)]


async def test_rules(settings: config.Settings, args: argparse.Namespace, raw: bytes) -> int:
    """Print which rule matches the message from --client, at which SMTP step, and why."""
    from .sources import make_source

    sender, steps = rule_steps(raw, args.client, args.sender, args.to)
    where = db_connect.route(settings, embedded.database_url(settings))
    pool = await db.create_pool(where.url, pooled=where.pooled, name=where.name)
    try:
        loaded = await make_source(settings, pool).fetch("rules")
    finally:
        await pool.close()
    ruleset, problems = rules.build_rules(loaded.rows)
    for problem in problems:
        print(f"warning: {problem}")
    print(f"{len(ruleset)} rules (from {loaded.origin}); client {args.client}, sender <{sender}>")
    for step, facts in steps:
        match = rules.evaluate(ruleset, facts)
        if isinstance(match, rules.Match):
            reply = f"; reply: {match.rule.reply}" if match.rule.action == "reject" else ""
            print(f"at {step}: {rules.describe(match)}{reply}")
            return 0
    print("no rule matches")
    return 0


def cmd_pause(settings: config.Settings, args: argparse.Namespace) -> int:
    reason = pause.clean_reason(args.reason)

    async def act(conn: Any) -> int:
        await db_defence.pause(conn, reason)
        print(f"paused: every host answers {pause.reply(reason or pause.replies.PAUSED_NO_REASON)}")
        return 0

    return asyncio.run(_with_conn(settings, act))


def cmd_resume(settings: config.Settings, args: argparse.Namespace) -> int:
    async def act(conn: Any) -> int:
        print("receiving again" if await db_defence.resume(conn) else "was not paused")
        return 0

    return asyncio.run(_with_conn(settings, act))
