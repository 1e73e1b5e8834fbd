"""`python -m app check`: settings, database, list source and spool, one line each."""

from __future__ import annotations

from . import db, embedded
from .config import Settings
from .sources import make_source
from .spool import Spool


async def run_checks(settings: Settings) -> int:
    """Print one `ok:`/`error:` line per check; return 1 if any failed."""
    failed = False

    def report(ok: bool, text: str) -> None:
        nonlocal failed
        failed |= not ok
        print(("ok:    " if ok else "error: ") + text)

    for key, value in settings.masked().items():
        print(f"       {key}={value}")
    url = settings.database_url or embedded.start(settings.data_dir)
    try:
        pool = await db.create_pool(url)
        await db.ping(pool)
        report(True, "database reachable")
    except Exception as error:
        report(False, f"database unreachable: {error!r}")
        pool = None
    if pool is not None:
        source = make_source(settings, pool)
        for table in ("domains", "bans", "private_email"):
            try:
                rows = await source.fetch(table)
                report(True, f"{source.name} {table}: {len(rows)} rows")
            except Exception as error:
                report(False, f"{source.name} {table} unreadable: {error!r}")
        await pool.close()
    spool = Spool(settings.spool_dir)
    pending, dead = spool.counts()
    report(pending == 0, f"spool: {pending} messages waiting for replay in {spool.pending_dir}")
    report(dead == 0, f"dead letters: {dead} in {spool.dead_dir}")
    for path, reason in spool.dead()[:10]:
        print(f"       {path.name}: {reason}")
    return 1 if failed else 0
