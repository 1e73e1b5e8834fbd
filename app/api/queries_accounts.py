"""Accounts' SQL: read, create, change password, revoke tokens, remove; every
write announced on ACCOUNTS_CHANNEL.
"""

from __future__ import annotations

import uuid
from typing import TypeAlias

import asyncpg

from .. import db_webhooks
from . import queries_mail
from .queries import Record

# The account functions also serve the command line, on a plain connection.
Executor: TypeAlias = asyncpg.Pool | asyncpg.Connection

ACCOUNT_COLUMNS = (
    "id, address, password_hash, created_at, updated_at, by_operator, token_generation"
)
# Every write to `accounts` announces the address on this channel, in its own
# transaction (delivered at COMMIT): open event streams of that address
# decide again whether they may go on (events.py, mercure.py).
ACCOUNTS_CHANNEL = "tempmail_accounts"


def announced(write: str) -> str:
    """`write` (an INSERT, UPDATE or DELETE of accounts) returning the rows it
    changed, each announced on ACCOUNTS_CHANNEL."""
    return (
        f"WITH changed AS ({write} RETURNING {ACCOUNT_COLUMNS}) "
        f"SELECT {ACCOUNT_COLUMNS}, pg_notify('{ACCOUNTS_CHANNEL}', address) AS announced "
        "FROM changed"
    )


async def account_by_id(pool: Executor, account_id: uuid.UUID) -> Record | None:
    return await pool.fetchrow(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1", account_id)


async def account_by_address(pool: Executor, address: str) -> Record | None:
    return await pool.fetchrow(
        f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE address = $1", address
    )


async def create_account(
    pool: Executor, address: str, password_hash: str, *, by_operator: bool
) -> Record | None:
    """The new account, or None if the address already has one. `by_operator`:
    made with the command line (what lets it read a private_email address)."""
    return await pool.fetchrow(
        announced(
            "INSERT INTO accounts (id, address, password_hash, by_operator) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (address) DO NOTHING"
        ),
        uuid.uuid4(),
        address,
        password_hash,
        by_operator,
    )


# Moves an account's token generation on: every token issued before reads nothing.
_NEXT_GENERATION = "token_generation = coalesce(token_generation, 0) + 1, updated_at = now()"


async def set_password(pool: Executor, address: str, password_hash: str) -> bool:
    """A new password; the tokens issued before it stop reading (False: no account)."""
    changed = await pool.fetch(
        announced(f"UPDATE accounts SET password_hash = $2, {_NEXT_GENERATION} WHERE address = $1"),
        address,
        password_hash,
    )
    return bool(changed)


async def revoke_tokens(pool: Executor, address: str) -> bool:
    """Every token issued so far stops reading; the password stays (False: no account)."""
    changed = await pool.fetch(
        announced(f"UPDATE accounts SET {_NEXT_GENERATION} WHERE address = $1"), address
    )
    return bool(changed)


async def remove_account(pool: Executor, address: str) -> bool:
    """Delete the account of `address` and its webhooks (its mail stays; the
    command line's `remove`)."""
    await db_webhooks.remove_all_own(pool, address)
    return bool(await pool.fetch(announced("DELETE FROM accounts WHERE address = $1"), address))


async def all_accounts(pool: Executor) -> list[Record]:
    return list(
        await pool.fetch("SELECT address, created_at, by_operator FROM accounts ORDER BY address")
    )


async def delete_account(pool: asyncpg.Pool, account_id: uuid.UUID, address: str) -> None:
    """Delete the account, its mail and its webhooks in one transaction: an
    address whose account is gone is open to anyone again, so neither its mail
    nor a way to the next owner's must stay."""
    async with pool.acquire() as conn, conn.transaction():
        await queries_mail.remove_mail(conn, address, None)
        await db_webhooks.remove_all_own(conn, address)
        await conn.execute(announced("DELETE FROM accounts WHERE id = $1"), account_id)
