-- effect-oban migration 10: the staging index also holds each job's queue and state.
-- `Jobs.counts` counts scheduled and retryable jobs per queue through this index; without the queue
-- and state in it, each of those jobs cost a read of its table row (about 60 ms for 40,000 of them).
-- With them included, the count is an index-only scan where the table's pages are all-visible.
-- The stager's and the claim's use of the index is unchanged (the key is the same); each entry is
-- a few bytes larger, and only jobs entering `scheduled` or `retryable` write one.
-- Upgrade note: building the index reads the whole table and blocks inserts meanwhile (about a
-- second per million rows); on a large table, prune first or migrate at a quiet moment.

-- migrate:up
DROP INDEX {{prefix}}.oban_jobs_staging_idx;
CREATE INDEX oban_jobs_staging_idx
  ON {{prefix}}.oban_jobs (scheduled_at, id) INCLUDE (queue, state)
  WHERE state IN ('scheduled', 'retryable');

-- migrate:down
DROP INDEX {{prefix}}.oban_jobs_staging_idx;
CREATE INDEX oban_jobs_staging_idx
  ON {{prefix}}.oban_jobs (scheduled_at, id)
  WHERE state IN ('scheduled', 'retryable');
