"""Command line: `python -m app serve | api | init-db | check | retention | domains | bans |
accounts | rules | pause | resume`."""

from __future__ import annotations

import signal

# Until `serve` installs its reload handler, SIGHUP's default action would end
# the process: `systemctl reload` just after a start, or the supervisor
# forwarding it to a worker it has just started. Ignored from the first line.
signal.signal(signal.SIGHUP, signal.SIG_IGN)

import argparse
import asyncio
import datetime
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from . import __version__, config, db, db_catalog, db_schema, embedded, policy, retention

log = logging.getLogger("app")


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )


async def with_connection(settings: config.Settings, fn: Callable[[Any], Awaitable[int]]) -> int:
    url = embedded.database_url(settings)
    conn = await db.connect(url)
    try:
        await db_schema.install_schema(conn)
        return await fn(conn)
    finally:
        await conn.close()


def cmd_serve(settings: config.Settings, args: argparse.Namespace) -> int:
    from . import workers

    if workers.worker_index() is None:  # once: the supervisor or the only process
        log.info("[config] settings read from %s", config.describe_sources(args.env_file))
        for warning in config.warnings(env_file=args.env_file):
            log.warning("[config] %s", warning)

    if settings.workers > 1 and workers.worker_index() is None:
        return workers.Supervisor(settings, sys.argv[1:]).run()

    import uvloop

    from .service import Service

    async def serve() -> int:
        return await Service(settings, worker=workers.worker_index()).serve()

    return uvloop.run(serve())


def cmd_api(settings: config.Settings, args: argparse.Namespace) -> int:
    from .api.app import serve

    return serve(settings)


def read_password(stream: Any = None) -> str:
    """The first line of standard input (a prompt without echo on a terminal)."""
    stream = stream or sys.stdin
    if stream.isatty():
        import getpass

        return getpass.getpass("password: ")
    return str(stream.readline()).rstrip("\r\n")


# What `accounts passwd|revoke-tokens|remove` say when done.
ACCOUNT_CHANGES = {
    "passwd": "password changed for {address}; tokens issued before are revoked",
    "revoke-tokens": "revoked every token of {address}; the password stays",
    "remove": "removed the account of {address} (its mail is kept)",
}


def cmd_accounts(settings: config.Settings, args: argparse.Namespace) -> int:
    from .api import access, queries

    address = policy.normalize_address(args.address) if args.action != "list" else ""
    if args.action != "list" and policy.address_problem(address):
        print(f"error: {args.address!r} is not a valid address", file=sys.stderr)
        return 2
    password = ""
    if args.action in ("add", "passwd"):
        password = read_password()
        problem = access.password_problem(password)
        if problem:
            print(f"error: password: {problem}", file=sys.stderr)
            return 2

    async def change(conn: Any) -> bool:
        """passwd, revoke-tokens or remove; False if the address has no account."""
        if args.action == "passwd":  # also revokes the tokens issued before (012)
            return await queries.set_password(conn, address, await access.hash_password(password))
        if args.action == "revoke-tokens":
            return await queries.revoke_tokens(conn, address)
        return await queries.remove_account(conn, address)

    async def act(conn: Any) -> int:
        if args.action == "add":
            password_hash = await access.hash_password(password)
            row = await queries.create_account(conn, address, password_hash, by_operator=True)
            if row is None:
                print(f"error: {address} already has an account", file=sys.stderr)
                return 1
            print(f"added {address} (account {row['id']})")
        elif args.action == "list":
            for row in await queries.all_accounts(conn):
                created = row["created_at"].isoformat(timespec="seconds")
                made = "operator" if row["by_operator"] else "api"  # who made it (011)
                print(f"{row['address']}\t{created}\t{made}")
        elif await change(conn):
            print(ACCOUNT_CHANGES[args.action].format(address=address))
        else:
            print(f"error: {address} has no account", file=sys.stderr)
            return 1
        return 0

    return asyncio.run(with_connection(settings, act))


def cmd_init_db(settings: config.Settings, args: argparse.Namespace) -> int:
    async def done(conn: Any) -> int:
        print(
            f"schema at version {await db_schema.schema_version(conn)} ({db_schema.SCHEMA.parent})"
        )
        for _, text in await db_catalog.report(conn):
            print("  " + text)
        return 0

    return asyncio.run(with_connection(settings, done))


def cmd_retention(settings: config.Settings, args: argparse.Namespace) -> int:
    """Expire mail now (or, with --dry-run, say what that would delete)."""
    from .policy import build_private
    from .sources import make_source

    if settings.retention_hours <= 0:
        print("RETENTION_HOURS=0 keeps mail forever: nothing to expire")
        return 0

    async def run() -> int:
        pool = await db.create_pool(embedded.database_url(settings))
        try:
            async with pool.acquire() as conn:
                await db_schema.install_schema(conn)
            # Without the private list nothing is deleted: loading it must succeed.
            loaded = await make_source(settings, pool).fetch("private_email")
            private = build_private(loaded.rows)
            print(f"private_email: {len(private)} addresses (from {loaded.origin}), exempt")
            now = datetime.datetime.now(datetime.UTC)
            cutoff = now - datetime.timedelta(hours=settings.retention_hours)
            found = await retention.survey(pool, cutoff, private, args.include_existing)
            print(retention.describe(found, cutoff, dry_run=True))
            if not args.dry_run:
                async with retention.alone(pool, wait=True):  # after a worker's run, if one is on
                    found = await retention.expire(pool, cutoff, private, args.include_existing)
                print(retention.describe(found, cutoff, dry_run=False))
            return 0
        finally:
            await pool.close()

    return asyncio.run(run())


def cmd_domains(settings: config.Settings, args: argparse.Namespace) -> int:
    domain = ""
    if args.action != "list":
        domain = policy.canonical_pattern(args.domain) or ""
        if not domain:
            print(
                f"error: {args.domain!r} is not a valid domain "
                "(expected example.com or *.example.com)",
                file=sys.stderr,
            )
            return 2

    async def act(conn: Any) -> int:
        if args.action == "add":
            await db.add_domain(conn, domain)
            await db.announce_list_change(conn, "domains")  # running services reload it now
            print(f"added {domain}")
        elif args.action == "remove":
            if not await db.remove_domain(conn, domain):
                print(f"error: {domain} is not in the list", file=sys.stderr)
                return 1
            await db.announce_list_change(conn, "domains")
            print(f"removed {domain}")
        else:
            for row in await db.list_domains(conn):
                print(row["domain"] + ("" if row["active"] is not False else "  (inactive)"))
        return 0

    return asyncio.run(with_connection(settings, act))


def ban_value(scope: str, value: str) -> str | None:
    """The stored form of a ban value, or None if it is not valid for `scope`."""
    if scope == "domain":
        return policy.canonical_pattern(value)
    value = value.strip()
    return value.lower() if value else None


def cmd_bans(settings: config.Settings, args: argparse.Namespace) -> int:
    value = ""
    if args.action != "list":
        value = ban_value(args.scope, args.value) or ""
        if not value:
            print(f"error: {args.value!r} is not a valid {args.scope} ban value", file=sys.stderr)
            return 2

    async def act(conn: Any) -> int:
        if args.action == "add":
            await db.add_ban(conn, args.scope, value, args.match)
            await db.announce_list_change(conn, "bans")  # running services reload it now
            print(f"banned {args.scope} {args.match} {value}")
        elif args.action == "remove":
            if not await db.remove_ban(conn, args.scope, value):
                print(f"error: no {args.scope} ban on {value}", file=sys.stderr)
                return 1
            await db.announce_list_change(conn, "bans")
            print(f"unbanned {args.scope} {value}")
        else:
            for row in await db.list_bans(conn):
                print(f"{row['scope']}\t{row['match_type']}\t{row['status']}\t{row['value']}")
        return 0

    return asyncio.run(with_connection(settings, act))


def cmd_check(settings: config.Settings, args: argparse.Namespace) -> int:
    from .check import run_checks

    return asyncio.run(run_checks(settings, args.env_file))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--env-file", default=".env", help="settings file (default: ./.env)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the SMTP service").set_defaults(run=cmd_serve)
    commands.add_parser("api", help="run the HTTP API (read side)").set_defaults(run=cmd_api)
    commands.add_parser("init-db", help="install or upgrade the schema").set_defaults(
        run=cmd_init_db
    )
    commands.add_parser("check", help="validate settings, database, sources, spool").set_defaults(
        run=cmd_check
    )

    expire = commands.add_parser(
        "retention", help="expire mail older than RETENTION_HOURS now (private mail is kept)"
    )
    expire.set_defaults(run=cmd_retention)
    expire.add_argument(
        "--include-existing",
        action="store_true",
        help="also expire mail stored before the upgrade (kept by the periodic run)",
    )
    expire.add_argument("--dry-run", action="store_true", help="count, delete nothing")

    domains = commands.add_parser("domains", help="manage the domain whitelist")
    domains.set_defaults(run=cmd_domains)
    domain_actions = domains.add_subparsers(dest="action", required=True)
    for action in ("add", "remove"):
        domain_actions.add_parser(action).add_argument(
            "domain", help="example.com or *.example.com"
        )
    domain_actions.add_parser("list")

    bans = commands.add_parser("bans", help="manage sender bans")
    bans.set_defaults(run=cmd_bans)
    ban_actions = bans.add_subparsers(dest="action", required=True)
    for action in ("add", "remove"):
        sub = ban_actions.add_parser(action)
        sub.add_argument("scope", choices=("email", "domain"))
        sub.add_argument("value")
        if action == "add":
            sub.add_argument("--match", choices=("exact", "contains"), default="exact")
    ban_actions.add_parser("list")

    accounts = commands.add_parser(
        "accounts", help="manage API accounts (the password is read from standard input)"
    )
    accounts.set_defaults(run=cmd_accounts)
    account_actions = accounts.add_subparsers(dest="action", required=True)
    for action in ("add", "passwd", "revoke-tokens", "remove"):
        account_actions.add_parser(action).add_argument("address")
    account_actions.add_parser("list")

    from . import cli_defence

    cli_defence.add_parsers(
        commands, cli_defence.cmd_rules, cli_defence.cmd_pause, cli_defence.cmd_resume
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = config.load(env_file=args.env_file)
    except config.ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    try:
        return int(args.run(settings, args))
    except db_schema.SchemaRefused as error:
        print(f"error: init-db refused: {error}", file=sys.stderr)
        return 1
    except (OSError, db.asyncpg.PostgresError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
