-- effect-oban migration 6: vacuum the jobs table by its churn, not by its size, so that a table
-- holding millions of finished jobs fetches as fast as an empty one (`npm run bench:scale`).
--
-- Every claimed job leaves a dead entry at the front of the fetch index (jobs are claimed in index
-- order), and each fetch walks over those entries until a VACUUM removes them. PostgreSQL's default
-- waits until 20% of the table is dead (2 million rows in a table of 10 million), and may skip the
-- index pass when few heap pages are affected, which leaves exactly those entries in place. Here a
-- vacuum is due after a fixed number of dead rows, whatever the table's size, and always cleans the
-- indexes. ALTER TABLE ... SET takes a brief lock only.

-- migrate:up
ALTER TABLE {{prefix}}.oban_jobs SET (
  autovacuum_vacuum_scale_factor = 0,
  autovacuum_vacuum_threshold = 10000,
  vacuum_index_cleanup = on
);

-- migrate:down
ALTER TABLE {{prefix}}.oban_jobs RESET (
  autovacuum_vacuum_scale_factor,
  autovacuum_vacuum_threshold,
  vacuum_index_cleanup
);
