-- 012: which tokens of an account still count. A token carries the
-- account's `token_generation` when it was issued (claim `gen`); a password
-- change (`accounts passwd`) or `accounts revoke-tokens` moves it on, and a
-- token of another generation reads nothing, on any route or open stream
-- (app/api/access.py). A counter, not a time: a token issued in the same
-- second as the change, or by an API host whose clock differs, is judged
-- right. NULL (every account made before this migration) is generation 0,
-- which is what tokens issued before it carry. Nullable, no default: a
-- catalog change only (migrations/README.md).
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS token_generation integer;
