-- effect-oban migration 1: the jobs table, its state type and its indexes.
-- {{prefix}} is replaced by the quoted schema name; the migrator creates the schema.

-- migrate:up
CREATE TYPE {{prefix}}.oban_job_state AS ENUM (
  'available',
  'scheduled',
  'executing',
  'retryable',
  'completed',
  'discarded',
  'cancelled',
  'suspended'
);

CREATE TABLE {{prefix}}.oban_jobs (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  state {{prefix}}.oban_job_state NOT NULL DEFAULT 'available',
  queue text NOT NULL DEFAULT 'default',
  worker text NOT NULL,
  args jsonb NOT NULL DEFAULT '{}'::jsonb,
  meta jsonb NOT NULL DEFAULT '{}'::jsonb,
  tags text[] NOT NULL DEFAULT '{}',
  errors jsonb NOT NULL DEFAULT '[]'::jsonb,
  attempt smallint NOT NULL DEFAULT 0,
  max_attempts smallint NOT NULL DEFAULT 20,
  priority smallint NOT NULL DEFAULT 0,
  inserted_at timestamptz NOT NULL DEFAULT now(),
  scheduled_at timestamptz NOT NULL DEFAULT now(),
  attempted_at timestamptz,
  completed_at timestamptz,
  discarded_at timestamptz,
  cancelled_at timestamptz,
  attempted_by text[],
  CONSTRAINT oban_jobs_attempt_range CHECK (attempt >= 0 AND attempt <= max_attempts),
  CONSTRAINT oban_jobs_max_attempts_positive CHECK (max_attempts >= 1),
  CONSTRAINT oban_jobs_priority_range CHECK (priority BETWEEN 0 AND 9),
  CONSTRAINT oban_jobs_queue_length CHECK (char_length(queue) BETWEEN 1 AND 128),
  CONSTRAINT oban_jobs_worker_length CHECK (char_length(worker) BETWEEN 1 AND 128),
  CONSTRAINT oban_jobs_meta_object CHECK (jsonb_typeof(meta) = 'object'),
  CONSTRAINT oban_jobs_errors_array CHECK (jsonb_typeof(errors) = 'array')
);

-- Producers fetch available jobs of one queue in priority, scheduled_at, id order.
CREATE INDEX oban_jobs_fetch_idx
  ON {{prefix}}.oban_jobs (state, queue, priority, scheduled_at, id);

-- The stager looks only at jobs waiting for their time.
CREATE INDEX oban_jobs_staging_idx
  ON {{prefix}}.oban_jobs (scheduled_at, id)
  WHERE state IN ('scheduled', 'retryable');

-- The pruner deletes terminal jobs by age, one state at a time.
CREATE INDEX oban_jobs_completed_at_idx
  ON {{prefix}}.oban_jobs (completed_at)
  WHERE state = 'completed';
CREATE INDEX oban_jobs_cancelled_at_idx
  ON {{prefix}}.oban_jobs (cancelled_at)
  WHERE state = 'cancelled';
CREATE INDEX oban_jobs_discarded_at_idx
  ON {{prefix}}.oban_jobs (discarded_at)
  WHERE state = 'discarded';

-- The rescuer looks only at executing jobs.
CREATE INDEX oban_jobs_executing_idx
  ON {{prefix}}.oban_jobs (attempted_at)
  WHERE state = 'executing';

-- migrate:down
DROP TABLE {{prefix}}.oban_jobs;
DROP TYPE {{prefix}}.oban_job_state;
