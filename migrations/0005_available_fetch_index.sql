-- effect-oban migration 5: the fetch index holds available jobs only.
-- The index that producers fetch from covered every job in every state, so each change of state
-- (claim, ack, retry) added an entry to it, and finished jobs kept their entries until pruned.
-- As a partial index on `state = 'available'` it gets an entry only when a job becomes available,
-- stays as small as the backlog however many finished jobs the table holds, and a claim and an
-- ack each write one index entry fewer. No query looks up other states through it.
-- Upgrade note: building the index reads the whole table and blocks inserts meanwhile (about
-- a second per million rows); on a large table, prune first or migrate at a quiet moment.

-- migrate:up
DROP INDEX {{prefix}}.oban_jobs_fetch_idx;
CREATE INDEX oban_jobs_fetch_idx
  ON {{prefix}}.oban_jobs (queue, priority, scheduled_at, id)
  WHERE state = 'available';

-- migrate:down
DROP INDEX {{prefix}}.oban_jobs_fetch_idx;
CREATE INDEX oban_jobs_fetch_idx
  ON {{prefix}}.oban_jobs (state, queue, priority, scheduled_at, id);
