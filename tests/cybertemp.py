"""A database as a Cybertemp operator has it, and helpers to switch it over.

The tables are those of the Cybertemp README's DDL (DESIGN.md "Tables"),
with the `encrypted`/`key_version` columns its current binary writes:
`domains` without an `active` column, `bans` with a uuid id, a nullable
`match_type` and the `sender` scope, `private_email` with an id. On top,
what real deployments add: row-level security on `emails` with policies for
Supabase's `anon` and `authenticated` roles, grants to them and to
`service_role`, a view, their own indexes, a trigger, and the table in the
`supabase_realtime` publication. Rows span the past four days, a third of
them for addresses in `private_email`.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import asyncpg

from .helpers import ROOT, Server, clean_environment, query

# Roles are cluster-wide: made once, idempotently (other tests and other
# databases share them), never dropped.
ROLES = """
DO $$
DECLARE
    spec text[];
BEGIN
    FOREACH spec SLICE 1 IN ARRAY ARRAY[['anon', ''], ['authenticated', ''],
                                        ['service_role', 'BYPASSRLS']] LOOP
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = spec[1]) THEN
                EXECUTE format('CREATE ROLE %I NOLOGIN %s', spec[1], spec[2]);
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- made meanwhile by another test
        END;
    END LOOP;
END $$;
"""

TABLES = """
CREATE TABLE inbox (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(), email_address text UNIQUE NOT NULL,
    user_id uuid, fingerprint text, created_at timestamptz DEFAULT now());
CREATE TABLE emails (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(), mailbox_owner text NOT NULL,
    mailbox text DEFAULT 'INBOX', subject text NOT NULL, body text NOT NULL, html text,
    from_addr text NOT NULL, to_addrs text[], "timestamp" timestamptz DEFAULT now(),
    flags text[], size bigint, created_at timestamptz DEFAULT now(),
    encrypted boolean DEFAULT false, key_version integer);
CREATE TABLE domains (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(), domain text UNIQUE NOT NULL,
    created_at timestamptz DEFAULT now());
CREATE TABLE bans (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(), scope text NOT NULL, value text NOT NULL,
    match_type text DEFAULT 'exact', status text DEFAULT 'active',
    created_at timestamptz DEFAULT now());
CREATE TABLE private_email (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(), email text NOT NULL,
    last_updated_at timestamptz DEFAULT now());
"""

# What a website built on it adds.
WEBSITE = """
CREATE INDEX emails_mailbox_owner_idx ON emails (mailbox_owner);
CREATE INDEX emails_created_at_idx ON emails (created_at DESC);
CREATE FUNCTION is_private(address text) RETURNS boolean LANGUAGE sql STABLE
    SECURITY DEFINER SET search_path = public
    AS $$ SELECT EXISTS (SELECT 1 FROM private_email WHERE lower(email) = lower(address)) $$;
ALTER TABLE emails ENABLE ROW LEVEL SECURITY;
CREATE POLICY emails_public_read ON emails FOR SELECT TO anon
    USING (NOT is_private(mailbox_owner));
CREATE POLICY emails_owner_read ON emails FOR SELECT TO authenticated
    USING (mailbox_owner = current_setting('request.jwt.claims', true)::json ->> 'email');
GRANT SELECT ON emails TO anon, authenticated;
GRANT ALL ON emails TO service_role;
GRANT EXECUTE ON FUNCTION is_private(text) TO anon, authenticated;
CREATE VIEW inbox_summary WITH (security_invoker = true) AS
    SELECT mailbox_owner, count(*) AS messages, max(created_at) AS newest
    FROM emails GROUP BY mailbox_owner;
GRANT SELECT ON inbox_summary TO anon, authenticated;
CREATE TABLE mail_counter (mailbox_owner text PRIMARY KEY, received bigint NOT NULL);
CREATE FUNCTION count_mail() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO mail_counter VALUES (NEW.mailbox_owner, 1)
    ON CONFLICT (mailbox_owner) DO UPDATE SET received = mail_counter.received + 1;
    RETURN NEW;
END $$;
CREATE TRIGGER emails_count_mail AFTER INSERT ON emails
    FOR EACH ROW EXECUTE FUNCTION count_mail();
CREATE PUBLICATION supabase_realtime FOR TABLE emails;
"""

PUBLIC, PRIVATE = "user1@example.com", ("vip@example.com", "boss@example.com")

# Written the Cybertemp way: plain INSERTs, its field meanings.
ROWS = """
INSERT INTO domains (domain) VALUES ('example.com'), ('*.example.org');
INSERT INTO bans (scope, value, match_type) VALUES
    ('sender', 'spammer@bad.test', NULL), ('domain', 'evil.test', 'exact'),
    ('email', 'casino', 'contains');
INSERT INTO private_email (email) VALUES ('Vip@Example.com'), ('boss@example.com');
INSERT INTO inbox (email_address) VALUES
    ('user1@example.com'), ('vip@example.com'), ('boss@example.com');
INSERT INTO emails (mailbox_owner, mailbox, subject, body, html, from_addr, to_addrs, size,
                    created_at)
SELECT owner, 'INBOX', 'old ' || n, 'body ' || n, '', 'a@sender.test', ARRAY[owner], 120,
       now() - n * ($1::float8 * interval '1 second')
FROM generate_series(1, $2::int) AS n,
     (VALUES ('user1@example.com'), ('vip@example.com'), ('boss@example.com')) AS o(owner);
"""


def build(url: str, rows_per_owner: int = 96) -> int:
    """Make `url` a Cybertemp operator's database; return how many emails rows it has.

    Rows are spread evenly over the past four days.
    """

    async def go() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(ROLES)
            await conn.execute(TABLES)
            await conn.execute(WEBSITE)
            domains, rest = ROWS.split(";\nINSERT INTO emails", 1)
            await conn.execute(domains)
            await conn.execute(
                "INSERT INTO emails" + rest, 4 * 86400 / rows_per_owner, rows_per_owner
            )
        finally:
            await conn.close()

    asyncio.run(go())
    return 3 * rows_per_owner


def as_role(url: str, role: str, sql: str, email: str | None = None) -> list[asyncpg.Record]:
    """`sql` run as the website's `role` (a Supabase request for `email` when given)."""

    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url)
        try:
            async with conn.transaction():
                if email:
                    claims = json.dumps({"email": email})
                    await conn.execute("SELECT set_config('request.jwt.claims', $1, true)", claims)
                await conn.execute(f"SET LOCAL ROLE {role}")
                return await conn.fetch(sql)
        finally:
            await conn.close()

    return asyncio.run(go())


def visible_ids(url: str, role: str, email: str | None = None) -> set[str]:
    return {str(r[0]) for r in as_role(url, role, "SELECT id FROM emails", email)}


def clean_env(**settings: str) -> dict[str, str]:
    """The environment a test gives the service: its settings, and what
    helpers.clean_environment passes through from the shell."""
    return {**clean_environment(), **{k.upper(): str(v) for k, v in settings.items()}}


def app(*args: str, timeout: float = 120, **settings: str) -> subprocess.CompletedProcess[str]:
    """`python -m app ARGS` with only `settings` (and PATH/HOME) in its environment."""
    return subprocess.run(
        [sys.executable, "-m", "app", "--env-file", "/dev/null", *args],
        cwd=ROOT,
        env=clean_env(**settings),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def server(url: str, spool: Path, dns: str, **settings: str) -> Server:
    """The service on `url`, not started."""
    return Server(
        {
            "DATABASE_URL": url,
            "SPOOL_DIR": str(spool),
            "DNS_RESOLVER": dns,
            **{k.upper(): str(v) for k, v in settings.items()},
        }
    )


def count(url: str, sql: str, *args: object) -> int:
    return int(query(url, sql, *args)[0][0])
