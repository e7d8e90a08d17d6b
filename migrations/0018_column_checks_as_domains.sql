-- effect-oban migration 18: the jobs tables' one-column checks become domains.
--
-- PostgreSQL reads a table's CHECK constraints from their stored text and plans them again in
-- every statement that writes the table (ExecRelCheck), so each single-job statement (an insert,
-- a claim or an outcome of one job, a cancel, a retry) paid for parsing the seven checks of
-- `oban_jobs`: about 12 µs of the 29 µs the server spent executing a one-row insert (PostgreSQL 15,
-- 20,000 inserts in a PL/pgSQL loop; the seven combined into one CHECK: 28 µs). A domain's checks
-- are parsed once per connection and cached, and are tested only on the columns a statement writes:
-- with these domains the same insert took 21 µs. Bulk statements (a batch insert, a claim of 500)
-- spread the parse over their rows and cost what they did. The same values are refused as before
-- (the error names the domain's constraint instead of the table's).
--
-- The cross-column check `oban_jobs_attempt_range` (attempt between 0 and max_attempts) stays a
-- table constraint. `oban_jobs_finished` takes the same domains, so a move between the two tables
-- keeps its values' types.
--
-- Lock and time: the columns change type without a rewrite (each domain gets its checks only after
-- its columns have changed, and they are added NOT VALID: every existing value passed the identical
-- table checks this migration drops, in the same transaction). Four partial indexes of `oban_jobs`
-- that hold a changed column (fetch, executing, staging, workflow step) are rebuilt, and its
-- attempt range re-checked, while the migration holds the table's exclusive lock: about 2 s per
-- million rows in `oban_jobs` on a 2-core machine (its live jobs and the finished ones that stay;
-- finished rows moved out by migration 16's ack are not in it). `oban_jobs_finished` is not read:
-- none of its indexes holds a changed column, and its attempt range comes back NOT VALID.
--
-- The view `oban_jobs_all` is dropped and created again (its columns take the new types): grants
-- on it are lost, and a view of your own on it, or on one of the six columns, makes this migration
-- fail until you drop it (recreate both afterwards; docs/migrations.md).

-- migrate:up
CREATE DOMAIN {{prefix}}.oban_queue_name AS text;
CREATE DOMAIN {{prefix}}.oban_worker_name AS text;
CREATE DOMAIN {{prefix}}.oban_job_meta AS jsonb;
CREATE DOMAIN {{prefix}}.oban_job_errors AS jsonb;
CREATE DOMAIN {{prefix}}.oban_job_priority AS smallint;
CREATE DOMAIN {{prefix}}.oban_job_max_attempts AS smallint;

-- The view's columns have the tables' types; it is created again below.
DROP VIEW {{prefix}}.oban_jobs_all;

ALTER TABLE {{prefix}}.oban_jobs
  ALTER COLUMN queue TYPE {{prefix}}.oban_queue_name,
  ALTER COLUMN worker TYPE {{prefix}}.oban_worker_name,
  ALTER COLUMN meta TYPE {{prefix}}.oban_job_meta,
  ALTER COLUMN errors TYPE {{prefix}}.oban_job_errors,
  ALTER COLUMN priority TYPE {{prefix}}.oban_job_priority,
  ALTER COLUMN max_attempts TYPE {{prefix}}.oban_job_max_attempts,
  DROP CONSTRAINT oban_jobs_queue_length,
  DROP CONSTRAINT oban_jobs_worker_length,
  DROP CONSTRAINT oban_jobs_meta_object,
  DROP CONSTRAINT oban_jobs_errors_array,
  DROP CONSTRAINT oban_jobs_priority_range,
  DROP CONSTRAINT oban_jobs_max_attempts_positive;

-- A column type change re-checks every table constraint on that column by reading the table, and
-- the attempt range reads `max_attempts`: on the finished table (the big one) it is dropped first
-- and added back NOT VALID afterwards, as every row passed it already.
ALTER TABLE {{prefix}}.oban_jobs_finished
  DROP CONSTRAINT oban_jobs_attempt_range,
  DROP CONSTRAINT oban_jobs_queue_length,
  DROP CONSTRAINT oban_jobs_worker_length,
  DROP CONSTRAINT oban_jobs_meta_object,
  DROP CONSTRAINT oban_jobs_errors_array,
  DROP CONSTRAINT oban_jobs_priority_range,
  DROP CONSTRAINT oban_jobs_max_attempts_positive;
ALTER TABLE {{prefix}}.oban_jobs_finished
  ALTER COLUMN queue TYPE {{prefix}}.oban_queue_name,
  ALTER COLUMN worker TYPE {{prefix}}.oban_worker_name,
  ALTER COLUMN meta TYPE {{prefix}}.oban_job_meta,
  ALTER COLUMN errors TYPE {{prefix}}.oban_job_errors,
  ALTER COLUMN priority TYPE {{prefix}}.oban_job_priority,
  ALTER COLUMN max_attempts TYPE {{prefix}}.oban_job_max_attempts;
ALTER TABLE {{prefix}}.oban_jobs_finished
  ADD CONSTRAINT oban_jobs_attempt_range CHECK (attempt >= 0 AND attempt <= max_attempts) NOT VALID;

ALTER DOMAIN {{prefix}}.oban_queue_name
  ADD CONSTRAINT oban_queue_name_length CHECK (char_length(VALUE) BETWEEN 1 AND 128) NOT VALID;
ALTER DOMAIN {{prefix}}.oban_worker_name
  ADD CONSTRAINT oban_worker_name_length CHECK (char_length(VALUE) BETWEEN 1 AND 128) NOT VALID;
ALTER DOMAIN {{prefix}}.oban_job_meta
  ADD CONSTRAINT oban_job_meta_object CHECK (jsonb_typeof(VALUE) = 'object') NOT VALID;
ALTER DOMAIN {{prefix}}.oban_job_errors
  ADD CONSTRAINT oban_job_errors_array CHECK (jsonb_typeof(VALUE) = 'array') NOT VALID;
ALTER DOMAIN {{prefix}}.oban_job_priority
  ADD CONSTRAINT oban_job_priority_range CHECK (VALUE BETWEEN 0 AND 9) NOT VALID;
ALTER DOMAIN {{prefix}}.oban_job_max_attempts
  ADD CONSTRAINT oban_job_max_attempts_positive CHECK (VALUE >= 1) NOT VALID;

CREATE VIEW {{prefix}}.oban_jobs_all AS
  SELECT * FROM {{prefix}}.oban_jobs
  UNION ALL
  SELECT * FROM {{prefix}}.oban_jobs_finished;

-- Migration 13's candidates of a partitioned claim, returning the priority as the smallint its
-- result declares (PL/pgSQL's RETURN QUERY does not take a domain for its base type). The cast is
-- a no-op on the columns of earlier versions, so the rollback keeps this text.
CREATE OR REPLACE FUNCTION {{prefix}}.oban_available_candidates(
  queue_name text, part_by text, part_key text, full_parts text[],
  rate_part_by text, rate_part_key text, spent_parts text[], scan integer
) RETURNS TABLE (id bigint, priority smallint, scheduled_at timestamptz, gp text, rp text)
  LANGUAGE plpgsql VOLATILE
  AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
    SELECT c.id, c.priority::smallint, c.scheduled_at, p.gp, p.rp
    FROM {{prefix}}.oban_jobs AS c,
         LATERAL (
           SELECT CASE part_by WHEN 'worker' THEN c.worker WHEN 'args' THEN COALESCE(c.args ->> part_key, '') ELSE '' END AS gp,
                  CASE rate_part_by WHEN 'worker' THEN c.worker WHEN 'args' THEN COALESCE(c.args ->> rate_part_key, '') ELSE '' END AS rp
         ) AS p
    WHERE c.state = 'available' AND c.queue = queue_name
      AND NOT (p.gp = ANY(full_parts)) AND NOT (p.rp = ANY(spent_parts))
    ORDER BY c.priority, c.scheduled_at, c.id
    LIMIT scan;
END
$$;

-- migrate:down
DROP VIEW {{prefix}}.oban_jobs_all;

ALTER TABLE {{prefix}}.oban_jobs
  ALTER COLUMN queue TYPE text,
  ALTER COLUMN worker TYPE text,
  ALTER COLUMN meta TYPE jsonb,
  ALTER COLUMN errors TYPE jsonb,
  ALTER COLUMN priority TYPE smallint,
  ALTER COLUMN max_attempts TYPE smallint,
  ADD CONSTRAINT oban_jobs_max_attempts_positive CHECK (max_attempts >= 1),
  ADD CONSTRAINT oban_jobs_priority_range CHECK (priority BETWEEN 0 AND 9),
  ADD CONSTRAINT oban_jobs_queue_length CHECK (char_length(queue) BETWEEN 1 AND 128),
  ADD CONSTRAINT oban_jobs_worker_length CHECK (char_length(worker) BETWEEN 1 AND 128),
  ADD CONSTRAINT oban_jobs_meta_object CHECK (jsonb_typeof(meta) = 'object'),
  ADD CONSTRAINT oban_jobs_errors_array CHECK (jsonb_typeof(errors) = 'array');

-- The rollback reads each table once to check what it adds back, as the checks were before.
ALTER TABLE {{prefix}}.oban_jobs_finished
  DROP CONSTRAINT oban_jobs_attempt_range,
  ADD CONSTRAINT oban_jobs_attempt_range CHECK (attempt >= 0 AND attempt <= max_attempts),
  ALTER COLUMN queue TYPE text,
  ALTER COLUMN worker TYPE text,
  ALTER COLUMN meta TYPE jsonb,
  ALTER COLUMN errors TYPE jsonb,
  ALTER COLUMN priority TYPE smallint,
  ALTER COLUMN max_attempts TYPE smallint,
  ADD CONSTRAINT oban_jobs_max_attempts_positive CHECK (max_attempts >= 1),
  ADD CONSTRAINT oban_jobs_priority_range CHECK (priority BETWEEN 0 AND 9),
  ADD CONSTRAINT oban_jobs_queue_length CHECK (char_length(queue) BETWEEN 1 AND 128),
  ADD CONSTRAINT oban_jobs_worker_length CHECK (char_length(worker) BETWEEN 1 AND 128),
  ADD CONSTRAINT oban_jobs_meta_object CHECK (jsonb_typeof(meta) = 'object'),
  ADD CONSTRAINT oban_jobs_errors_array CHECK (jsonb_typeof(errors) = 'array');

DROP DOMAIN {{prefix}}.oban_queue_name;
DROP DOMAIN {{prefix}}.oban_worker_name;
DROP DOMAIN {{prefix}}.oban_job_meta;
DROP DOMAIN {{prefix}}.oban_job_errors;
DROP DOMAIN {{prefix}}.oban_job_priority;
DROP DOMAIN {{prefix}}.oban_job_max_attempts;

CREATE VIEW {{prefix}}.oban_jobs_all AS
  SELECT * FROM {{prefix}}.oban_jobs
  UNION ALL
  SELECT * FROM {{prefix}}.oban_jobs_finished;
