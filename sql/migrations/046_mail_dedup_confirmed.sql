-- 046: a resend is a copy of a message whose 250 its client never confirmed
-- (app/db_dedup.py). The client confirms it saw our 250 when it sends its
-- next command on that session; such keys are marked here, and a copy of a
-- confirmed message is stored (the same bytes sent again are a new message).
-- Our own table (045): a constant default is a catalog change.
ALTER TABLE mail_dedup ADD COLUMN IF NOT EXISTS confirmed boolean NOT NULL DEFAULT false;
