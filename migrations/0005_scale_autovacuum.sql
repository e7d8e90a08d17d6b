-- effect-oban migration 5: vacuum the jobs table by its churn, not by its size.
-- Every fetched job leaves a dead entry at the front of the fetch index's `available` range (jobs
-- are claimed in index order), and each fetch walks over those entries until VACUUM removes them.
-- With PostgreSQL's default (vacuum once 20% of the table is dead), a table holding 10 million
-- finished jobs waits for 2 million dead rows, so its fetches slowed down with every job run since
-- the last vacuum. Here a vacuum is due after a fixed number of dead rows whatever the table's
-- size, and it always cleans the indexes (PostgreSQL may otherwise skip the index pass when few
-- heap pages are affected, which leaves exactly those entries in place).

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
