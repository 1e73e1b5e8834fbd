-- 060: when each domain was added, for the API's /domains `createdAt` (it
-- showed the API's start time). A domains table that has a created_at
-- already (a website's) is left as it is. Otherwise the column is added,
-- nullable, and given the default now(): both catalog changes only (no
-- rewrite, no row touched), so rows inserted from now on, by `domains add`
-- or by a website, carry their time. Rows older than this migration stay
-- NULL; the API shows them with this migration's applied_at, the latest time
-- they can have been added (app/api/queries.py).
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_attribute
        WHERE attrelid = 'domains'::regclass AND attname = 'created_at' AND NOT attisdropped
    ) THEN
        ALTER TABLE domains ADD COLUMN created_at timestamptz;
        ALTER TABLE domains ALTER COLUMN created_at SET DEFAULT now();
    END IF;
END $$;
