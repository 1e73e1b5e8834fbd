"""The embedded PostgreSQL (pgserver) used when DATABASE_URL is unset.

pgserver run as root creates a `pgserver` system user and widens the
permissions of the data directory's parents; run the service as a normal
user, or set DATABASE_URL, on a shared machine.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

from .config import Settings

log = logging.getLogger("app.embedded")
# pgserver gives `pg_ctl start` a fixed 10 s; a busy machine can need longer.
# The server keeps starting after pg_ctl is given up on, and the next try
# finds it (the pool and the schema install wait for it to accept).
START_TRIES = 6
# pgserver logs every command it runs, with its output, at INFO.
logging.getLogger("pgserver").setLevel(logging.WARNING)


def start(data_dir: str) -> str:
    """Start (or reuse) the embedded server under `data_dir`; return its URL."""
    import pgserver

    path = Path(data_dir).resolve() / "pgdata"
    path.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, START_TRIES + 1):
        try:
            server = pgserver.get_server(path, cleanup_mode="stop")
            break
        except subprocess.TimeoutExpired:
            if attempt == START_TRIES:
                raise
            log.warning("[db] the embedded PostgreSQL is slow to start; waiting (%d)", attempt)
    url: str = server.get_uri()
    log.warning(
        "[db] DATABASE_URL is unset: using the embedded PostgreSQL in %s; look at the "
        "tables with: psql '%s'",
        path,
        url,
    )
    return url


def database_url(settings: Settings) -> str:
    """The one place settings become a database URL: DATABASE_URL, or the
    embedded server under DATA_DIR (started if it is not running)."""
    return settings.database_url or start(settings.data_dir)
