"""`python -m app check`: settings, database, the API's role, mail tables, list
source, certificate and spool, one line each."""

from __future__ import annotations

import datetime
from collections.abc import Callable

from . import (
    config,
    config_warnings,
    db,
    db_batch,
    db_catalog,
    db_connect,
    db_errors,
    db_grants,
    db_schema,
    embedded,
)
from .config import Settings
from .sources import PRIVATE_ORDER, make_source
from .spool import Spool
from .tls import certificate_expiry

CERT_WARN_DAYS = 14
Report = Callable[[bool, str], None]


async def takes_mail(pool: db.Pool) -> tuple[bool, str]:
    """Does the database take a write (db_batch.probe_write)? With the line to print."""
    try:
        await db_batch.probe_write(pool)
    except Exception as error:
        full = db_errors.classify(error) == db_errors.STORE_FULL
        return False, ("mail store full: " if full else "writes fail: ") + db_errors.describe(error)
    return True, "database takes mail (a test row, rolled back)"


async def run_checks(settings: Settings, env_file: str | None = None) -> int:
    """Print one `ok:`/`error:` line per check (`warn:` for what does not fail
    it); return 1 if any failed."""
    failed = False

    def report(ok: bool, text: str) -> None:
        nonlocal failed
        failed |= not ok
        print(("ok:    " if ok else "error: ") + text)

    print(f"       settings read from {config.describe_sources(env_file)}:")
    print(f"       this is host {settings.host_name} (HOST_NAME)")
    for key, value in settings.masked().items():
        print(f"       {key}={value}")
    for warning in config_warnings.warnings(env_file=env_file):
        report(False, warning)
    for line in config_warnings.unknown_names(env_file=env_file):
        print("warn:  " + line)
    await check_database(settings, report)
    if settings.api_database_url:
        pooled = db_connect.looks_pooled(settings.api_database_url, settings.database_pooled)
        await check_api_role(settings.api_database_url, report, pooled)
    if settings.tls_cert:
        check_certificate(settings.tls_cert, report)
    check_spool(settings.spool_dir, report)
    return 1 if failed else 0


async def check_database(settings: Settings, report: Report) -> None:
    url = embedded.database_url(settings)
    if settings.database_url is None:
        report(True, f"embedded PostgreSQL (DATABASE_URL unset): psql '{url}'")
    where = db_connect.route(settings, url)
    try:
        await db_connect.reach_route(where)
    except db_connect.Unusable as error:
        report(False, str(error))
        return
    report(True, f"database reachable at {db_connect.address(url)}{describe_route(where)}")
    pooler = db_connect.pooler_warning(settings)
    if pooler:
        print("warn:  " + pooler)
    pool = await db.create_pool(url, pooled=where.pooled, name=where.name)
    try:
        try:
            async with pool.acquire() as conn:
                version = await db_schema.schema_version(conn)
                current = await db_schema.installed_checksum(conn) == db_schema.checksum()
                latest = db_schema.migrations()[-1][0]
                report(
                    current,
                    f"schema version {version} (this release: {latest}"
                    + ("" if current else "; run `tempmail init-db`")
                    + ")",
                )
                for ok, text in await db_catalog.report(conn):
                    report(ok, text)
        except Exception as error:
            report(False, f"mail tables unreadable: {error!r}")
        report(*await takes_mail(pool))
        await check_lists(settings, pool, report)
    finally:
        await pool.close()


def describe_route(where: db_connect.Route) -> str:
    """How the database is reached, after `database reachable at ...` (pure)."""
    text = " (a transaction-mode pooler: no statement cache)" if where.pooled else ""
    if where.session_url != where.url:
        text += f"; sessions (LISTEN, locks) at {db_connect.address(where.session_url)}"
    return text


async def check_lists(settings: Settings, pool: db.Pool, report: Report) -> None:
    source = make_source(settings, pool)
    for table in ("domains", "bans", "private_email"):
        try:
            loaded = await source.fetch(table)
            supabase_private = table == "private_email" and source.name == "supabase"
            order = f" ({PRIVATE_ORDER})" if supabase_private else ""
            report(True, f"{loaded.origin} {table}: {len(loaded.rows)} rows{order}")
        except Exception as error:
            report(False, f"{source.name} {table} unreadable: {error!r}")


async def check_api_role(url: str, report: Report, pooled: bool = False) -> None:
    """API_DATABASE_URL reaches the database and its role holds the API's grants."""
    try:
        conn = await db_connect.connect(url, "API_DATABASE_URL", pooled)
    except db_connect.Unusable as error:
        report(False, str(error))
        return
    try:
        lacking = await db_grants.missing(conn)
    except db.asyncpg.PostgresError as error:
        report(False, f"API_DATABASE_URL: cannot read its privileges: {error}")
        return
    finally:
        await conn.close()
    role = db_grants.role_of(url)
    if lacking:
        report(
            False,
            f"API_DATABASE_URL: role {role} lacks {', '.join(lacking)}: "
            "run `tempmail init-db` (it grants them)",
        )
    else:
        report(True, f"API_DATABASE_URL: role {role} holds what the API needs")


def check_certificate(path: str, report: Report) -> None:
    try:
        expires = certificate_expiry(path)
    except (OSError, ValueError) as error:
        report(False, f"TLS certificate {path} unreadable: {error}")
        return
    left = expires - datetime.datetime.now(datetime.UTC)
    report(
        left.days >= CERT_WARN_DAYS,
        f"TLS certificate {path} expires {expires:%Y-%m-%d} ({left.days} days)",
    )


def check_spool(directory: str, report: Report) -> None:
    spool, *workers = Spool.family(directory)  # workers: WORKERS>1's worker-N/
    for each in (spool, *workers):
        where = each.directory.resolve()
        try:
            each.check_writable()
            if each is spool:
                report(True, f"SPOOL_DIR {where} is writable")
        except OSError as error:
            report(False, f"SPOOL_DIR {where} is not writable: {error.strerror or error}")
        pending, dead = each.counts()
        if each is spool or pending or dead:
            report(
                pending == 0, f"spool: {pending} messages waiting for replay in {each.pending_dir}"
            )
            report(dead == 0, f"dead letters: {dead} in {each.dead_dir}")
        for path, reason in each.dead()[:10]:
            print(f"       {path.name}: {reason}")
