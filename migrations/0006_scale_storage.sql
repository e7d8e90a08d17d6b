-- effect-oban migration 6: storage settings that keep a jobs table holding millions of finished jobs
-- about as fast as an empty one (`npm run bench:scale`, docs/benchmarks.md).
--
-- fillfactor 90: every state change writes a new row version, and when it does not fit on its
-- page PostgreSQL puts it wherever its free space map finds room. In a big table that is the few
-- hundred bytes left at the end of millions of old, full pages, so each claim and each ack dirtied
-- (and after a checkpoint wrote in full to the WAL) another old page: a drain on a table holding
-- 10 million finished jobs ran at 0.4x the speed of an empty table. With 10% kept free, new
-- versions stay on their own page or go to pages with real room, and old full pages are left alone.
-- Only pages written from now on keep the 10%; old full pages are no longer picked for new versions.
--
-- Autovacuum by churn, not by size: every claimed job leaves a dead entry at the front of the fetch
-- index (jobs are claimed in index order) that each fetch walks over until a VACUUM removes it.
-- PostgreSQL's default waits until 20% of the table is dead (2 million rows for 10 million), and
-- may skip the index pass when few heap pages are affected; here a vacuum is due after a fixed
-- number of dead rows and always cleans the indexes. ALTER TABLE ... SET takes a brief lock only.

-- migrate:up
ALTER TABLE {{prefix}}.oban_jobs SET (
  fillfactor = 90,
  autovacuum_vacuum_scale_factor = 0,
  autovacuum_vacuum_threshold = 10000,
  vacuum_index_cleanup = on
);

-- migrate:down
ALTER TABLE {{prefix}}.oban_jobs RESET (
  fillfactor,
  autovacuum_vacuum_scale_factor,
  autovacuum_vacuum_threshold,
  vacuum_index_cleanup
);
