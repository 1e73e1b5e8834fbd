-- 050: Mailpit's message tags (app/api/mailpit_tags.py). One nullable array
-- on the row, no default (a catalog change only: migrations/README.md): a
-- mailbox's tags are the distinct names on its rows, so a tag exists while
-- a message carries it, per address, as Mailpit prunes unused tags. NULL
-- (or empty) is "no tags". Readers written for the Cybertemp schema never
-- see it.
ALTER TABLE emails ADD COLUMN IF NOT EXISTS tags text[];
