-- effect-oban migration 16: completed jobs leave the hot table.
--
-- Every job writes three row versions into `oban_jobs` (insert, claim, ack). On a table holding
-- millions of finished jobs each of those versions lands on a different old page that has a little
-- room left, so each costs a full-page image in the WAL and often a read: a drain ran at 0.34-0.49x
-- of its speed on an empty table, and it does not wear off (docs/design/finished-jobs.md).
--
-- From this version the ack moves a job that finishes (completed, discarded or cancelled) into
-- `oban_jobs_finished` (a DELETE from `oban_jobs` and an INSERT here, in the ack's statement), so
-- `oban_jobs` holds live jobs and the finished rows that stay: workflow steps (their dependents read
-- their state and result), jobs whose cancel was requested, jobs that hold their unique key in their
-- finished state, and jobs finished by other statements (a cancel, the rescuer's discard). This
-- table is only ever appended to and pruned from the old end, so its pages fill in order.
--
-- Reads that may meet a finished job use the view `oban_jobs_all` (both tables, UNION ALL); a job is
-- in exactly one of them at any snapshot, since the move is one statement. Retrying or deleting a
-- finished job moves it back first. Rows are never written here with a new id: `id` comes from
-- `oban_jobs`'s identity.
--
-- Cost: the move is a DELETE, so every ack statement that moves jobs runs the statement trigger
-- `oban_jobs_workflow_settled` once (migration 15 had made acks of plain jobs run none): a few µs
-- per statement, and PL/pgSQL's first load (about 5 ms) once per new connection. A condition on the
-- trigger cannot see the rows' notes in time, and a BEFORE DELETE row trigger taking them would
-- lock every deleted row (the pruner's too); the call is the cheaper price.
--
-- Online: the table starts empty and nothing is rewritten. Finished rows already in `oban_jobs` stay
-- there until the pruner deletes them, as before.
--
-- A later migration that adds a column to `oban_jobs` must add it here too, at the same position,
-- and recreate the view (its `*` is expanded when it is created).

-- migrate:up
CREATE TABLE {{prefix}}.oban_jobs_finished (
  LIKE {{prefix}}.oban_jobs INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
  PRIMARY KEY (id),
  CONSTRAINT oban_jobs_finished_state CHECK (state IN ('completed', 'discarded', 'cancelled'))
);

-- The pruner deletes by age, one state at a time, as in `oban_jobs`; the dashboard's throughput
-- reads completions by time through the same index.
CREATE INDEX oban_jobs_finished_completed_at_idx
  ON {{prefix}}.oban_jobs_finished (completed_at)
  WHERE state = 'completed';
CREATE INDEX oban_jobs_finished_discarded_at_idx
  ON {{prefix}}.oban_jobs_finished (discarded_at)
  WHERE state = 'discarded';
CREATE INDEX oban_jobs_finished_cancelled_at_idx
  ON {{prefix}}.oban_jobs_finished (cancelled_at)
  WHERE state = 'cancelled';

-- Appended to and deleted from in bulk: vacuum by churn, as migration 6 does for `oban_jobs`.
ALTER TABLE {{prefix}}.oban_jobs_finished SET (
  autovacuum_vacuum_scale_factor = 0,
  autovacuum_vacuum_threshold = 10000,
  autovacuum_vacuum_insert_scale_factor = 0,
  autovacuum_vacuum_insert_threshold = 100000
);

CREATE VIEW {{prefix}}.oban_jobs_all AS
  SELECT * FROM {{prefix}}.oban_jobs
  UNION ALL
  SELECT * FROM {{prefix}}.oban_jobs_finished;

-- migrate:down
DROP VIEW {{prefix}}.oban_jobs_all;
INSERT INTO {{prefix}}.oban_jobs OVERRIDING SYSTEM VALUE SELECT * FROM {{prefix}}.oban_jobs_finished;
DROP TABLE {{prefix}}.oban_jobs_finished;
