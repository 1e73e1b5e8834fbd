"""`python -m app check`: settings, database, mail tables, list source and spool, one line each."""

from __future__ import annotations

import datetime

from . import config, db, db_catalog, db_errors, db_schema, embedded
from .config import Settings
from .sources import PRIVATE_ORDER, make_source
from .spool import Spool
from .tls import certificate_expiry

CERT_WARN_DAYS = 14


async def takes_mail(pool: db.Pool) -> tuple[bool, str]:
    """Does the database take a write (db.probe_write)? With the line to print."""
    try:
        await db.probe_write(pool)
    except Exception as error:
        full = db_errors.classify(error) == db_errors.STORE_FULL
        return False, ("mail store full: " if full else "writes fail: ") + db_errors.describe(error)
    return True, "database takes mail (a test row, rolled back)"


async def run_checks(settings: Settings, env_file: str | None = None) -> int:
    """Print one `ok:`/`error:` line per check; return 1 if any failed."""
    failed = False

    def report(ok: bool, text: str) -> None:
        nonlocal failed
        failed |= not ok
        print(("ok:    " if ok else "error: ") + text)

    print(f"       settings read from {config.describe_sources(env_file)}:")
    for key, value in settings.masked().items():
        print(f"       {key}={value}")
    for warning in config.warnings(env_file=env_file):
        report(False, warning)
    url = embedded.database_url(settings)
    if settings.database_url is None:
        report(True, f"embedded PostgreSQL (DATABASE_URL unset): psql '{url}'")
    try:
        pool = await db.create_pool(url)
        await db.ping(pool)
        report(True, "database reachable")
    except Exception as error:
        report(False, f"database unreachable: {error!r}")
        pool = None
    if pool is not None:
        try:
            async with pool.acquire() as conn:
                version = await db_schema.schema_version(conn)
                current = await db_schema.installed_checksum(conn) == db_schema.checksum()
                latest = db_schema.migrations()[-1][0]
                report(
                    current,
                    f"schema version {version} (this release: {latest}"
                    + ("" if current else "; run `python -m app init-db`")
                    + ")",
                )
                for ok, text in await db_catalog.report(conn):
                    report(ok, text)
        except Exception as error:
            report(False, f"mail tables unreadable: {error!r}")
        report(*await takes_mail(pool))
    if pool is not None:
        source = make_source(settings, pool)
        for table in ("domains", "bans", "private_email"):
            try:
                loaded = await source.fetch(table)
                order = (
                    f" ({PRIVATE_ORDER})"
                    if table == "private_email" and source.name == "supabase"
                    else ""
                )
                report(True, f"{loaded.origin} {table}: {len(loaded.rows)} rows{order}")
            except Exception as error:
                report(False, f"{source.name} {table} unreadable: {error!r}")
        await pool.close()
    if settings.tls_cert:
        try:
            expires = certificate_expiry(settings.tls_cert)
            left = expires - datetime.datetime.now(datetime.UTC)
            report(
                left.days >= CERT_WARN_DAYS,
                f"TLS certificate {settings.tls_cert} expires {expires:%Y-%m-%d} "
                f"({left.days} days)",
            )
        except (OSError, ValueError) as error:
            report(False, f"TLS certificate {settings.tls_cert} unreadable: {error}")
    spool, *workers = Spool.family(settings.spool_dir)  # workers: WORKERS>1's worker-N/
    for each in (spool, *workers):
        try:
            each.check_writable()
            if each is spool:
                report(True, f"spool {each.directory} writable")
        except OSError as error:
            report(False, f"spool {each.directory} not writable: {error.strerror or error}")
        pending, dead = each.counts()
        if each is spool or pending or dead:
            report(
                pending == 0, f"spool: {pending} messages waiting for replay in {each.pending_dir}"
            )
            report(dead == 0, f"dead letters: {dead} in {each.dead_dir}")
        for path, reason in each.dead()[:10]:
            print(f"       {path.name}: {reason}")
    return 1 if failed else 0
