-- effect-oban migration 7: unique jobs among a set of states.
-- A unique job records which of its states hold its key (`unique_states`, a bitmask read by
-- `oban_state_in`); the unique index holds a keyed row only while it is in one of them, so a job
-- that moves out of its set (say, to `completed` when completed jobs do not count) frees its key
-- for the next insert. Rows without a mask (cron slots, and every key written before this
-- migration) hold their key in every state, as before.
-- Bits: available 1, scheduled 2, executing 4, retryable 8, completed 16, discarded 32,
-- cancelled 64, suspended 128.
-- Upgrade note: building the new index reads the whole table and blocks writes meanwhile (about
-- a second per million rows, CREATE INDEX CONCURRENTLY cannot run in the migrator's
-- transaction); on a large table, prune first or migrate at a quiet moment. Jobs without a key
-- add no entry to the index and cost one NULL test on each write.

-- migrate:up
ALTER TABLE {{prefix}}.oban_jobs ADD COLUMN unique_states smallint;

CREATE FUNCTION {{prefix}}.oban_state_in(state {{prefix}}.oban_job_state, mask smallint) RETURNS boolean
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$
    SELECT (mask::int & CASE state
      WHEN 'available' THEN 1 WHEN 'scheduled' THEN 2 WHEN 'executing' THEN 4 WHEN 'retryable' THEN 8
      WHEN 'completed' THEN 16 WHEN 'discarded' THEN 32 WHEN 'cancelled' THEN 64 ELSE 128 END) <> 0
  $$;

DROP INDEX {{prefix}}.oban_jobs_unique_key_idx;
CREATE UNIQUE INDEX oban_jobs_unique_key_idx
  ON {{prefix}}.oban_jobs (unique_key)
  WHERE unique_key IS NOT NULL AND (unique_states IS NULL OR {{prefix}}.oban_state_in(state, unique_states));

-- migrate:down
-- Keys held by rows outside their states would collide in the old index (a key in every state):
-- those rows give their key up.
UPDATE {{prefix}}.oban_jobs SET unique_key = NULL
  WHERE unique_key IS NOT NULL AND unique_states IS NOT NULL
    AND NOT {{prefix}}.oban_state_in(state, unique_states);
DROP INDEX {{prefix}}.oban_jobs_unique_key_idx;
CREATE UNIQUE INDEX oban_jobs_unique_key_idx
  ON {{prefix}}.oban_jobs (unique_key)
  WHERE unique_key IS NOT NULL;
DROP FUNCTION {{prefix}}.oban_state_in({{prefix}}.oban_job_state, smallint);
ALTER TABLE {{prefix}}.oban_jobs DROP COLUMN unique_states;
