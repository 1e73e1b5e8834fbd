"""What a failed write to PostgreSQL calls for (`classify`), and how to name it.

Connection losses, timeouts (unless the database writes meanwhile: store.py)
and server-side trouble are worth retrying, a
full disk too (new mail is refused meanwhile); anything else is a refusal,
which may be about one row or every row (the writer tells which:
app/refusals.py).
"""

from __future__ import annotations

import asyncpg


def describe(error: BaseException) -> str:
    """`error` for a dead letter, a log line, /readyz, `check`: class, SQLSTATE, text."""
    state = getattr(error, "sqlstate", None)
    return f"{type(error).__name__}" + (f" ({state})" if state else "") + f": {error}"


RETRY, REFUSED, STORE_FULL = "retry", "refused", "store full"

# SQLSTATE classes that are never about a row: the connection (08), the
# login (28, 3D), a transaction that lost a race (40), the server's resources
# (53; 53100 disk full is STORE_FULL), a lock or object busy (55), the server
# shutting down or a query cancelled (57), an I/O error (58), a read-only
# standby (25).
NOT_ABOUT_A_ROW = frozenset({"08", "25", "28", "3D", "40", "53", "55", "57", "58"})
DISK_FULL = "53100"


QUERY_CANCELED = "57014"  # statement_timeout, or a cancel by an operator


def timed_out(error: BaseException) -> bool:
    """Did the write run out of time (the server's statement_timeout, a
    cancel, or the client's command timeout)? One row may be the cause (an
    operator's slow trigger or index): the writer tells (store.py)."""
    state = getattr(error, "sqlstate", None)
    return state == QUERY_CANCELED or (state is None and isinstance(error, TimeoutError))


def classify(error: BaseException) -> str:
    """What a failed batch write calls for.

    RETRY: the connection or the server failed; the same write will succeed
    later. STORE_FULL: the database is out of disk space: retried too, and
    new mail is refused meanwhile. REFUSED: anything else, whatever its
    class (a value, an index entry too large, an operator's trigger; asyncpg
    could not encode a value; a bug): maybe one row, maybe every row (a
    dropped column): app/refusals.py tells which.
    """
    state = getattr(error, "sqlstate", None) or ""
    if state == DISK_FULL:
        return STORE_FULL
    if isinstance(error, asyncpg.DataError):
        return REFUSED
    if state[:2] in NOT_ABOUT_A_ROW:
        return RETRY
    client_side = (asyncpg.InterfaceError, asyncpg.InternalClientError, OSError, TimeoutError)
    if not state and isinstance(error, client_side):
        return RETRY  # the connection was lost or timed out, or asyncpg lost its state
    return REFUSED
