-- 010: the read side's own table (python -m app api).
--
-- An account claims one address: with API_ACCESS=open, an address that has
-- an account is readable only with that account's token (POST /token) or
-- password (Mailpit routes, HTTP basic). `address` is stored as the writer
-- stores emails.mailbox_owner (lower case, domain in punycode), so the two
-- compare with `=` on their indexes. The mail tables are not touched.
CREATE TABLE IF NOT EXISTS accounts (
    id            uuid PRIMARY KEY,
    address       text UNIQUE NOT NULL,
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
