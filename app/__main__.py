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

from . import (
    __version__,
    config,
    config_warnings,
    db,
    db_catalog,
    db_connect,
    db_grants,
    db_schema,
    embedded,
    policy,
    retention,
    runner,
)

log = logging.getLogger("app")
ENV_FILE_HELP = "settings file (default: ./.env; one named here must exist)"


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )


async def with_connection(settings: config.Settings, fn: Callable[[Any], Awaitable[int]]) -> int:
    url = embedded.database_url(settings)
    conn = await db_connect.connect_session(db_connect.route(settings, url))
    try:
        await db_schema.install_schema(conn)
        return await fn(conn)
    finally:
        await conn.close()


def cmd_serve(settings: config.Settings, args: argparse.Namespace) -> int:
    from . import workers

    if workers.worker_index() is None:  # once: the supervisor or the only process
        log.info("[config] settings read from %s", config.describe_sources(args.env_file))
        lines = config_warnings.warnings(env_file=args.env_file)
        for line in lines + config_warnings.unknown_names(env_file=args.env_file):
            log.warning("[config] %s", line)

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


def cmd_run(settings: config.Settings, args: argparse.Namespace) -> int:
    return runner.main(settings, args)


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


async def receives_mail_for(settings: config.Settings, conn: Any, address: str) -> bool:
    """Whether serve accepts mail for `address`: its whitelist, read where serve reads it."""
    if not settings.use_domain_whitelist:
        return True
    if settings.lists_source == "supabase":
        from .sources import SupabaseSource

        assert settings.supabase_url and settings.supabase_key
        source = SupabaseSource(settings.supabase_url, settings.supabase_key)
        rows = (await source.fetch("domains")).rows
    else:
        rows = [dict(row) for row in await db.list_domains(conn)]
    domains, _ = policy.build_domains(rows)
    domain = policy.normalize_domain(address.rpartition("@")[2])
    return domain is not None and domains.matches(domain)


def cmd_accounts(settings: config.Settings, args: argparse.Namespace) -> int:
    from .api import access, queries_accounts

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
            return await queries_accounts.set_password(
                conn, address, await access.hash_password(password)
            )
        if args.action == "revoke-tokens":
            return await queries_accounts.revoke_tokens(conn, address)
        return await queries_accounts.remove_account(conn, address)

    async def act(conn: Any) -> int:
        if args.action == "add":
            password_hash = await access.hash_password(password)
            row = await queries_accounts.create_account(
                conn, address, password_hash, by_operator=True
            )
            if row is None:
                print(f"error: {address} already has an account", file=sys.stderr)
                return 1
            print(f"added {address} (account {row['id']})")
            if not await receives_mail_for(settings, conn, address):
                domain = address.rpartition("@")[2]
                print(
                    f"warning: mail to {address} is refused: {domain} is not a domain of this "
                    f"server (add it: tempmail domains add {domain})",
                    file=sys.stderr,
                )
        elif args.action == "list":
            for row in await queries_accounts.all_accounts(conn):
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
        return await grant_api_role(settings, conn)

    return asyncio.run(with_connection(settings, done))


async def grant_api_role(settings: config.Settings, conn: Any) -> int:
    """With API_DATABASE_URL set (another role): grant that role what the API needs."""
    role = db_grants.role_of(settings.api_database_url or "")
    if role is None or role == await conn.fetchval("SELECT current_user"):
        return 0
    try:
        await db_grants.grant(conn, role)
    except db.asyncpg.PostgresError as error:
        print(
            f"error: cannot grant the API's role {role} (API_DATABASE_URL) its privileges: "
            f"{error}; run init-db as the tables' owner",
            file=sys.stderr,
        )
        return 1
    print(f"API_DATABASE_URL's role {role}: granted what the API needs (no DDL)")
    return 0


def cmd_retention(settings: config.Settings, args: argparse.Namespace) -> int:
    """Expire mail now (or, with --dry-run, say what that would delete)."""
    from .policy import build_private
    from .sources import make_source

    if settings.retention_hours <= 0:
        print("RETENTION_HOURS=0 keeps mail forever: nothing to expire")
        return 0

    async def run() -> int:
        where = db_connect.route(settings, embedded.database_url(settings))
        pool = await db.create_pool(where.url, pooled=where.pooled, name=where.name)
        try:
            conn = await db_connect.connect_session(where)
            try:
                await db_schema.install_schema(conn)
            finally:
                await conn.close()
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


# Commands that run until stopped log at LOG_LEVEL, and init-db (its log says
# what it changed); the others print their answer, and their log only says
# what went wrong (WARNING and up).
LOGGING = ("serve", "api", "run", "init-db")


# How build_parser's helpers (and cli_defence's, cli_webhooks') add subcommands:
# `command(name, run, text)` a subcommand, `actions(sub)(name)` an action of it.
Command = Callable[[str, Callable[..., int], str], argparse.ArgumentParser]
Actions = Callable[[argparse.ArgumentParser], Callable[[str], argparse.ArgumentParser]]


def build_parser() -> argparse.ArgumentParser:
    # --env-file is accepted before and after the command (tempmail check --env-file x).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--env-file", default=argparse.SUPPRESS, help=ENV_FILE_HELP)
    parser = argparse.ArgumentParser(prog="tempmail", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--env-file", default=None, help=ENV_FILE_HELP)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, run: Callable[..., int], text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text, parents=[common])
        sub.set_defaults(run=run)
        return sub

    def actions(sub: argparse.ArgumentParser) -> Callable[[str], argparse.ArgumentParser]:
        chosen = sub.add_subparsers(dest="action", required=True)
        return lambda name: chosen.add_parser(name, parents=[common])

    add_service_parsers(command)
    add_list_parsers(command, actions)
    from . import cli_defence

    cli_defence.add_parsers(
        command, actions, cli_defence.cmd_rules, cli_defence.cmd_pause, cli_defence.cmd_resume
    )
    from . import cli_webhooks

    cli_webhooks.add_parsers(command, actions)
    return parser


def add_service_parsers(command: Command) -> None:
    """The commands that run or look after the service: serve, api, run,
    init-db, check, retention."""
    command("serve", cmd_serve, "run the SMTP service")
    command("api", cmd_api, "run the HTTP API (read side)")
    runner.add_arguments(command("run", cmd_run, runner.HELP))
    command("init-db", cmd_init_db, "install or upgrade the schema")
    command("check", cmd_check, "validate settings, database, sources, spool")
    expire = command(
        "retention",
        cmd_retention,
        "expire mail older than RETENTION_HOURS now (private mail is kept)",
    )
    expire.add_argument(
        "--include-existing",
        action="store_true",
        help="also expire mail stored before the upgrade (kept by the periodic run)",
    )
    expire.add_argument("--dry-run", action="store_true", help="count, delete nothing")


def add_list_parsers(command: Command, actions: Actions) -> None:
    """The commands that edit the domains, bans and accounts tables."""
    domain_action = actions(command("domains", cmd_domains, "manage the domain whitelist"))
    for action in ("add", "remove"):
        domain_action(action).add_argument("domain", help="example.com or *.example.com")
    domain_action("list")

    ban_action = actions(command("bans", cmd_bans, "manage sender bans"))
    for action in ("add", "remove"):
        sub = ban_action(action)
        sub.add_argument("scope", choices=("email", "domain"))
        sub.add_argument("value")
        if action == "add":
            sub.add_argument("--match", choices=("exact", "contains"), default="exact")
    ban_action("list")

    account_action = actions(
        command("accounts", cmd_accounts, "manage API accounts (password on standard input)")
    )
    for action in ("add", "passwd", "revoke-tokens", "remove"):
        account_action(action).add_argument("address")
    account_action("list")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.env_file is not None and not config.has_file(args.env_file):
        print(f"error: --env-file {args.env_file}: no such file", file=sys.stderr)
        return 2
    args.env_file_named, args.env_file = args.env_file, args.env_file or ".env"
    try:
        settings = config.load(env_file=args.env_file)
    except config.ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    quiet = args.command not in LOGGING and settings.log_level != "DEBUG"
    setup_logging("WARNING" if quiet else settings.log_level)
    try:
        return int(args.run(settings, args))
    except db_connect.Unusable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except db_schema.SchemaRefused as error:
        print(f"error: init-db refused: {error}", file=sys.stderr)
        return 1
    except (OSError, db.asyncpg.PostgresError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        embedded.release()  # the last user of the embedded PostgreSQL stops it


if __name__ == "__main__":
    sys.exit(main())
