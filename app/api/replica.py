"""Where the API reads, writes and listens: one database, or a read replica
beside its primary (README: "Running on several hosts").

API_DATABASE_URL (else DATABASE_URL) is where lists and reads go. At start
the API asks it `pg_is_in_recovery()`. A primary serves everything, as on
one host; its LISTEN goes to DATABASE_DIRECT_URL when that is set (a
session connection past a pooler). A standby (a streaming replica) serves
only the lists and reads: NOTIFY is not replicated and a standby takes no
writes, so LISTEN, the rows an event carries, and every write (accounts,
seen flags, deletes, tags) go to the primary, DATABASE_URL (LISTEN to
DATABASE_DIRECT_URL if set). A replica lags: a message an event announced
may not be replayed there yet, so a read by id that misses on the replica
is asked of the primary once (`Routes.fallback`); a list is the replica's,
eventually consistent.
"""

from __future__ import annotations

import dataclasses

import asyncpg

from ..config import Settings
from ..db_connect import Unusable


@dataclasses.dataclass(frozen=True)
class Routes:
    reads: str  # lists and reads by id (may be a standby)
    primary: str  # writes, the rows of events, what a replica has not replayed yet
    listen: str  # the LISTEN session
    primary_setting: str  # the setting `primary` came from, for start-up errors

    @property
    def fallback(self) -> bool:
        """Reads go to a replica: a read by id that misses there asks the primary."""
        return self.reads != self.primary


def routes(settings: Settings, url: str, setting: str, standby: bool) -> Routes:
    """The URLs for `url` (named by `setting`), a standby or not; Unusable
    when a standby has no primary named beside it."""
    direct = settings.database_direct_url
    if not standby:
        return Routes(url, url, direct or url, setting)
    if setting == "DATABASE_URL":
        raise Unusable(
            "DATABASE_URL is a standby (pg_is_in_recovery): it must be the primary; "
            "a read replica goes in API_DATABASE_URL"
        )
    if not settings.database_url:
        raise Unusable(
            "API_DATABASE_URL is a standby (read replica): set DATABASE_URL to its primary "
            "(the API writes and LISTENs there: NOTIFY is not replicated)"
        )
    return Routes(url, settings.database_url, direct or settings.database_url, "DATABASE_URL")


async def in_recovery(conn: asyncpg.Connection) -> bool:
    """Is this connection's server a standby?"""
    return bool(await conn.fetchval("SELECT pg_is_in_recovery()"))
