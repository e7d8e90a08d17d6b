-- effect-oban migration 3: a unique key for jobs that must be inserted at most once
-- (cron slots). NULL for ordinary jobs; the partial unique index ignores those.

-- migrate:up
ALTER TABLE {{prefix}}.oban_jobs ADD COLUMN unique_key text;

CREATE UNIQUE INDEX oban_jobs_unique_key_idx
  ON {{prefix}}.oban_jobs (unique_key)
  WHERE unique_key IS NOT NULL;

-- migrate:down
DROP INDEX {{prefix}}.oban_jobs_unique_key_idx;
ALTER TABLE {{prefix}}.oban_jobs DROP COLUMN unique_key;
