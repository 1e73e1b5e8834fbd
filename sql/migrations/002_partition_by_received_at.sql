-- 002: partition emails and raw_messages by received_at.
--
-- Retention then drops whole partitions (no long locks, no dead tuples)
-- instead of deleting rows. The service creates the partitions ahead of
-- time (app/retention.py); rows outside them land in the DEFAULT partition,
-- so a write never fails for want of one. Existing rows (ours, or a
-- Cybertemp database's) move into one "legacy" partition that ends with the
-- newest of them, and expire as a whole. Readers see the same tables and
-- columns; only the primary keys gain received_at, as PostgreSQL requires.
DO $$
DECLARE
    table_name text;
    newest timestamptz;
BEGIN
    FOREACH table_name IN ARRAY ARRAY['emails', 'raw_messages'] LOOP
        IF (SELECT relkind FROM pg_class WHERE oid = table_name::regclass) = 'p' THEN
            CONTINUE;
        END IF;
        IF table_name = 'emails' THEN
            -- Cybertemp rows have no received_at; their created_at is the same instant.
            UPDATE emails SET received_at = coalesce(created_at, now()) WHERE received_at IS NULL;
        END IF;
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING ALL EXCLUDING INDEXES) PARTITION BY RANGE (received_at)',
                       table_name || '_new', table_name);
        EXECUTE format('ALTER TABLE %I ALTER COLUMN received_at SET NOT NULL, '
                       'ALTER COLUMN received_at SET DEFAULT now()', table_name || '_new');
        EXECUTE format('SELECT date_trunc(''hour'', max(received_at)) + interval ''1 hour'' FROM %I',
                       table_name) INTO newest;
        IF newest IS NOT NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (MINVALUE) TO (%L)',
                           table_name || '_legacy', table_name || '_new', newest);
        END IF;
        EXECUTE format('CREATE TABLE %I PARTITION OF %I DEFAULT',
                       table_name || '_default', table_name || '_new');
        EXECUTE format('INSERT INTO %I SELECT * FROM %I', table_name || '_new', table_name);
        EXECUTE format('DROP TABLE %I', table_name);
        EXECUTE format('ALTER TABLE %I RENAME TO %I', table_name || '_new', table_name);
        EXECUTE format('ALTER TABLE %I ADD PRIMARY KEY (id, received_at)', table_name);
    END LOOP;
END $$;

CREATE INDEX IF NOT EXISTS emails_owner_received_idx ON emails (mailbox_owner, received_at DESC);
CREATE INDEX IF NOT EXISTS emails_raw_id_idx ON emails (raw_id);
