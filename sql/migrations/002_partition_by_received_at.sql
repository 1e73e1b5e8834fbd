-- 002: formerly converted existing emails and raw_messages tables into
-- partitioned copies and dropped the originals. That lost the operator's
-- row-level security, policies, grants, triggers and publication
-- membership, and failed on a view, so it no longer converts anything:
-- schema.sql now creates new mail tables partitioned from the start, and an
-- existing table is kept as it is (docs/decisions.md, "Existing tables are
-- never rebuilt"). Databases that ran the old version keep their
-- partitioned tables; the version number stays recorded.
SELECT 1;
