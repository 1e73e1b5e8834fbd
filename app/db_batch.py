"""The batch write: the emails columns the writer fills, the one INSERT
statement of a batch and its arguments, insert_batch (with resend claims and
webhook events beside it), private_email's stamp after the commit, and the
rolled-back probes (probe_write, refused_beside) the writer and refusals use.

The pool, list tables and what the db_* modules share are db.py's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from . import db_dedup, verdicts
from .db import LOCK_TIMEOUT, NEW_MAIL_CHANNEL, folded, log, quote_ident
from .db_errors import REFUSED, classify
from .model import Prepared
from .policy import address_spellings


@dataclasses.dataclass(frozen=True)
class Column:
    """One emails column: how its value is made for a recipient's row, and
    the SQL that stores it (`r.<name>` unless given; no parameter when
    `value` is None: the SQL alone makes it)."""

    name: str
    type: str = "text"  # of the parameter array
    value: Callable[[Prepared, uuid.UUID, str], Any] | None = None
    sql: str = ""


def _attachments(p: Prepared) -> str:
    return json.dumps(
        [
            {"filename": a.filename, "content_type": a.content_type, "size": a.size}
            for a in p.parsed.attachments
        ]
    )


# The emails columns the writer fills, in Cybertemp's meanings where the
# column is Cybertemp's (README, "Switching from Cybertemp").
EMAIL_COLUMNS = (
    Column("id", "uuid", lambda p, row, owner: row),
    Column("mailbox_owner", "text", lambda p, row, owner: owner),
    Column("subject", "text", lambda p, row, owner: p.parsed.subject),
    Column("body", "text", lambda p, row, owner: p.parsed.body),
    Column("html", "text", lambda p, row, owner: p.parsed.html),
    # Cybertemp stored the envelope sender lower-cased.
    Column("from_addr", "text", lambda p, row, owner: p.envelope.mail_from.lower()),
    # Cybertemp's meaning: the envelope recipient of this row.
    Column("to_addrs", sql="ARRAY[r.mailbox_owner]"),
    Column("received_at", "timestamptz", lambda p, row, owner: p.envelope.received_at),
    Column("timestamp", sql="r.received_at"),
    # The sender's bytes, as Cybertemp counted them: without our trace line.
    Column("size", "bigint", lambda p, row, owner: len(p.envelope.raw) - p.envelope.trace_length),
    Column("message_id", "text", lambda p, row, owner: p.parsed.message_id),
    Column("header_from", "text", lambda p, row, owner: p.parsed.header_from),
    Column(
        "header_to",
        "text",
        lambda p, row, owner: json.dumps(p.parsed.header_to),
        "ARRAY(SELECT jsonb_array_elements_text(r.header_to::jsonb))",
    ),
    Column("attachments", "text", lambda p, row, owner: _attachments(p), "r.attachments::jsonb"),
    Column("remote_ip", "text", lambda p, row, owner: p.envelope.remote_ip, "r.remote_ip::inet"),
    Column("helo", "text", lambda p, row, owner: p.envelope.helo),
    Column("raw_id", "uuid", lambda p, row, owner: p.envelope.id),
    Column("tls", "bool", lambda p, row, owner: p.envelope.tls),
    Column("auth_results", "text", lambda p, row, owner: p.auth and p.auth.header),
    Column("spf", "text", lambda p, row, owner: p.auth and p.auth.spf),
    Column("dkim", "text", lambda p, row, owner: p.auth and p.auth.dkim),
    Column("dmarc", "text", lambda p, row, owner: p.auth and p.auth.dmarc),
    Column("dmarc_domain", "text", lambda p, row, owner: p.auth and p.auth.dmarc_domain),
    # Inbound defence: what the checks found (app/verdicts.py owns the shape).
    Column("verdicts", "text", lambda p, row, owner: verdicts.stored(p), "r.verdicts::jsonb"),
    Column("junk", "bool", lambda p, row, owner: verdicts.is_junk(p)),
    # One-time codes and verification link (migration 035, README "Codes and links").
    Column(
        "codes",
        "text",
        lambda p, row, owner: json.dumps(p.parsed.codes),
        "ARRAY(SELECT jsonb_array_elements_text(r.codes::jsonb))",
    ),
    Column("verify_link", "text", lambda p, row, owner: p.parsed.verify_link),
    Column("encrypted", sql="false"),  # bodies are stored in clear (Cybertemp's flag)
    Column("key_version", sql="NULL"),
)
_PARAMETERS = [c for c in EMAIL_COLUMNS if c.value is not None]
_RAW_PARAMETERS = 3  # $1..$3: raw_messages id, raw, received_at
_OWNER = f"${_RAW_PARAMETERS + 1 + _PARAMETERS.index(EMAIL_COLUMNS[1])}::text[]"
_ROW_ID = f"${_RAW_PARAMETERS + 1 + _PARAMETERS.index(EMAIL_COLUMNS[0])}::uuid[]"
_REVOKE = f"${_RAW_PARAMETERS + len(_PARAMETERS) + 1}::uuid[]"

# One statement, so one round trip and one implicit transaction per batch.
# Ids are made before the insert; ON CONFLICT DO NOTHING makes a retried
# batch that had in fact committed a no-op (idempotent writes). Each new row
# is announced on NEW_MAIL_CHANNEL ("<emails.id> <mailbox_owner>");
# PostgreSQL delivers notifications only at COMMIT, so a listener never
# hears of a row it cannot read yet.


def _insert_statement(revoking: bool) -> str:
    # Revokes are rare, and a DELETE by raw_id visits every partition's index
    # (raw_id is not the partition key): a statement of its own, only then.
    revokes = f"""
), revoked AS (
    DELETE FROM emails WHERE raw_id = ANY({_REVOKE})
), revoked_raw AS (
    DELETE FROM raw_messages WHERE id = ANY({_REVOKE})"""
    return f"""
WITH raw AS (
    INSERT INTO raw_messages (id, raw, received_at)
    SELECT * FROM unnest($1::uuid[], $2::bytea[], $3::timestamptz[])
    ON CONFLICT DO NOTHING
), mail AS (
    INSERT INTO emails ({", ".join(quote_ident(c.name) for c in EMAIL_COLUMNS)})
    SELECT {", ".join(c.sql or f"r.{c.name}" for c in EMAIL_COLUMNS)}
    FROM unnest({
        ", ".join(f"${_RAW_PARAMETERS + 1 + n}::{c.type}[]" for n, c in enumerate(_PARAMETERS))
    }) AS r({", ".join(c.name for c in _PARAMETERS)})
    ON CONFLICT DO NOTHING
), box AS (
    INSERT INTO inbox (email_address)
    SELECT DISTINCT unnest({_OWNER})
    ON CONFLICT (email_address) DO NOTHING{revokes if revoking else ""}
)
SELECT count(pg_notify('{NEW_MAIL_CHANNEL}', n.id::text || ' ' || n.owner))
FROM unnest({_ROW_ID}, {_OWNER}) AS n(id, owner)
"""


INSERT_BATCH = _insert_statement(revoking=False)
INSERT_AND_REVOKE = _insert_statement(revoking=True)

# private_email's stamp, after the batch's commit and apart from it (best
# effort): a row another transaction holds (a website updating it) is
# skipped, and a lock on the whole table (ALTER TABLE, VACUUM FULL, LOCK
# TABLE) is waited for at most LOCK_TIMEOUT: a lock on a list table must not
# stop mail (in the batch's statement, such a lock held every batch).
STAMP_TIMEOUT = 2.0  # seconds: the batch's 250s wait for the stamp
STAMP_PRIVATE = f"""
UPDATE private_email SET last_updated_at = now()
WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM private_email
    -- Spelled as operators type it: policy.address_spellings.
    WHERE {folded("email")} = ANY($1::text[])
    FOR UPDATE SKIP LOCKED
))
"""


def batch_args(batch: Sequence[Prepared], revoke: Sequence[uuid.UUID]) -> list[list[Any]]:
    """The parameters of INSERT_BATCH: raw_messages arrays, one array per
    EMAIL_COLUMNS parameter (one element per recipient row), and for
    INSERT_AND_REVOKE the revokes."""
    raws: list[list[Any]] = [[], [], []]
    columns: list[list[Any]] = [[] for _ in _PARAMETERS]
    for prepared in batch:
        envelope = prepared.envelope
        for array, value in zip(
            raws, (envelope.id, envelope.raw, envelope.received_at), strict=True
        ):
            array.append(value)
        for row_id, owner in zip(envelope.row_ids, envelope.recipients, strict=True):
            for array, column in zip(columns, _PARAMETERS, strict=True):
                array.append(column.value(prepared, row_id, owner))  # type: ignore[misc]
    return [*raws, *columns, *([list(revoke)] if revoke else [])]


async def stamp_private(pool: asyncpg.Pool, owners: Sequence[str]) -> None:
    """Stamp the private_email rows of `owners` (STAMP_PRIVATE), best effort:
    skipped (logged) while the table stays locked past LOCK_TIMEOUT; the next
    message to the address stamps it."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            spellings = address_spellings(set(owners))
            await conn.execute(STAMP_PRIVATE, spellings, timeout=STAMP_TIMEOUT)
    except Exception as error:
        log.info("[store] private_email not stamped this time: %r", error)


async def insert_batch(
    pool: asyncpg.Pool,
    batch: Sequence[Prepared],
    revoke: Sequence[uuid.UUID] = (),
    dedup_window: float = 0,
    beside: Callable[[Sequence[Prepared]], tuple[str, list[Any]] | None] | None = None,
    seen: db_dedup.Seen = db_dedup.NOTHING_SEEN,
) -> BaseException | None:
    """Insert `batch` and delete the messages in `revoke`, in one transaction.

    Without resend keys it is one statement: one implicit transaction, one round trip. `revoke`
    holds messages whose sender was told 451 after a write that may have
    committed: the sender will send again, so a copy of ours must not stay.
    With `dedup_window` (or revokes, or `seen`: 250s their clients saw),
    resends are found first, in the same transaction (app/db_dedup.py).
    `beside` makes a statement of the rows kept, run after them in the same
    transaction: the webhook events of the batch (app/webhooks_outbox.py).
    Returns the refusal of that statement, if PostgreSQL refused it: it ran
    in a savepoint, rolled back, so the mail is written all the same.
    """
    async with pool.acquire() as conn:
        try:
            await db_dedup.mark_confirmed(conn, seen.keys)
            dedup = bool(revoke or seen.keys) or (dedup_window > 0 and db_dedup.claims(batch))
            if dedup or beside is not None:
                # Not `async with`: its rollback on a lost connection raises an
                # InterfaceError that hides the error that matters. On failure
                # the connection is terminated below, which ends the transaction.
                transaction = conn.transaction()
                await transaction.start()
                if dedup:
                    batch, revoke = await db_dedup.claim(conn, batch, revoke, dedup_window, seen)
                await _insert(conn, batch, revoke)
                events = beside(batch) if beside is not None else None
                refused = await _in_savepoint(conn, *events) if events is not None else None
                await transaction.commit()
                return refused
            await _insert(conn, batch, revoke)
            return None
        except BaseException:
            # Its state is unknown after a failure: the pool makes a new one.
            # A connection that was lost is released already: terminating it
            # again would raise, and hide the error that matters.
            with contextlib.suppress(asyncpg.InterfaceError):
                conn.terminate()
            raise


async def _in_savepoint(
    conn: asyncpg.Connection, statement: str, args: list[Any]
) -> BaseException | None:
    """Run `statement` in a savepoint; if PostgreSQL refuses it, roll back to
    the savepoint and return the refusal (any other error is raised)."""
    savepoint = conn.transaction()  # nested: a savepoint
    await savepoint.start()
    try:
        await conn.execute(statement, *args)
    except Exception as error:
        if classify(error) != REFUSED:
            raise
        await savepoint.rollback()
        return error
    await savepoint.commit()
    return None


async def _insert(
    conn: asyncpg.Connection, batch: Sequence[Prepared], revoke: Sequence[uuid.UUID]
) -> None:
    statement = INSERT_AND_REVOKE if revoke else INSERT_BATCH
    await conn.execute(statement, *batch_args(batch, revoke))


PROBE_BYTES = 64 * 1024  # a message's size, for probe_write


class _RolledBack(Exception):
    """Ends a transaction whose rows must not stay (probe_write, refused_beside)."""


async def probe_write(pool: asyncpg.Pool) -> None:
    """Write a row of mail's size into raw_messages and roll it back: raises
    (DiskFullError) while the database has no room for mail."""
    async with pool.acquire() as conn:
        with contextlib.suppress(_RolledBack):
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO raw_messages (id, raw, received_at) VALUES ($1, $2, now())",
                    uuid.uuid4(),
                    os.urandom(PROBE_BYTES),  # random: compression cannot shrink it
                )
                raise _RolledBack


async def writes_now(pool: asyncpg.Pool) -> bool:
    """Does the database take a write of a message's size now (probe_write)?"""
    try:
        await probe_write(pool)
    except Exception:
        return False
    return True


async def refused_beside(pool: asyncpg.Pool, message: Prepared, twin: Prepared) -> bool:
    """Does the database take `twin` and refuse `message`, in one transaction
    (rolled back: no row stays, no notification is sent)? Between the two
    nothing can change the tables: the twin's insert holds their locks.
    Raises if the twin is refused (or the connection fails)."""
    refused = False
    async with pool.acquire() as conn:
        with contextlib.suppress(_RolledBack):
            async with conn.transaction():
                await conn.execute("SET CONSTRAINTS ALL IMMEDIATE")  # deferred ones too
                await conn.execute(INSERT_BATCH, *batch_args([twin], ()))
                args = batch_args([message], ())
                refused = await _in_savepoint(conn, INSERT_BATCH, args) is not None
                raise _RolledBack
    return refused
