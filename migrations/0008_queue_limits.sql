-- effect-oban migration 8: cluster-wide queue limits (global concurrency, partitioned limits,
-- rate limits).
--
-- oban_queues holds one row per queue that has cluster-wide limits: the source of truth every node
-- reads, and the row whose lock (SELECT ... FOR UPDATE) serializes the claims of a limited queue
-- across nodes. `partition` and `rate_partition` are {"by":"worker"} or {"by":"args","key":"..."}.
-- oban_rate_windows counts the jobs claimed per fixed window (aligned to the epoch, in ms) and per
-- partition ('' when the rate is not partitioned); windows before the current one are deleted by
-- the claims themselves. The index of executing jobs gains the queue as its first column, so that a
-- claim counts a queue's executing jobs from that queue's entries alone; it replaces the index on
-- attempted_at alone rather than adding one, so a claim writes no more index entries than before
-- (the reconciler's attempted_at filter reads the small executing index whole).

-- migrate:up
CREATE TABLE {{prefix}}.oban_queues (
  name text PRIMARY KEY,
  global_limit integer,
  "partition" jsonb,
  rate_limit integer,
  rate_period_ms bigint,
  rate_partition jsonb,
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT oban_queues_name_length CHECK (char_length(name) BETWEEN 1 AND 128),
  CONSTRAINT oban_queues_global_positive CHECK (global_limit >= 1),
  CONSTRAINT oban_queues_partition_needs_global CHECK ("partition" IS NULL OR global_limit IS NOT NULL),
  CONSTRAINT oban_queues_rate_complete CHECK ((rate_limit IS NULL) = (rate_period_ms IS NULL)),
  CONSTRAINT oban_queues_rate_positive CHECK (rate_limit >= 1 AND rate_period_ms >= 1),
  CONSTRAINT oban_queues_rate_partition_needs_rate CHECK (rate_partition IS NULL OR rate_limit IS NOT NULL)
);

CREATE TABLE {{prefix}}.oban_rate_windows (
  queue text NOT NULL,
  "partition" text NOT NULL,
  window_start bigint NOT NULL,
  count integer NOT NULL,
  PRIMARY KEY (queue, "partition", window_start)
);

DROP INDEX {{prefix}}.oban_jobs_executing_idx;
CREATE INDEX oban_jobs_executing_idx
  ON {{prefix}}.oban_jobs (queue, attempted_at)
  WHERE state = 'executing';

-- migrate:down
DROP INDEX {{prefix}}.oban_jobs_executing_idx;
CREATE INDEX oban_jobs_executing_idx
  ON {{prefix}}.oban_jobs (attempted_at)
  WHERE state = 'executing';
DROP TABLE {{prefix}}.oban_rate_windows;
DROP TABLE {{prefix}}.oban_queues;
