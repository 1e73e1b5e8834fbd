-- 045: resend detection (app/db_dedup.py, README "Running on several hosts").
-- One key per stored recipient row of a message that has a Message-ID: a
-- resend of it (same sender, recipient, Message-ID and bytes) within
-- DEDUP_WINDOW is not stored again. `emails` is partitioned by received_at,
-- so a unique index there cannot say "within a window": this small table
-- does, claimed in each batch's transaction and pruned past the window.
CREATE TABLE IF NOT EXISTS mail_dedup (
    key     bytea PRIMARY KEY,         -- SHA-256 (app/db_dedup.py keys)
    raw_id  uuid NOT NULL,             -- the message that claimed it (raw_messages.id)
    seen_at timestamptz NOT NULL,      -- when, by the database's clock
    resent  boolean NOT NULL DEFAULT false  -- a resend was dropped as its copy
);
-- Our own new table, empty here: its indexes are made with it.
CREATE INDEX IF NOT EXISTS mail_dedup_raw_id_idx ON mail_dedup (raw_id);
CREATE INDEX IF NOT EXISTS mail_dedup_seen_at_idx ON mail_dedup (seen_at);
