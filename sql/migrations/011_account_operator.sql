-- 011: who made an account. `by_operator` is true for accounts made with
-- `python -m app accounts add`, false for those made through POST /accounts,
-- NULL for accounts made before this migration (unknown: not the
-- operator's). An address listed in private_email is read only through an
-- account the operator made: a stranger's account on it (made before the
-- website listed the address) reads nothing once it is listed
-- (app/api/access.py). Nullable, no default: a catalog change only
-- (migrations/README.md).
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS by_operator boolean;
