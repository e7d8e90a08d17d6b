-- effect-oban migration 11: workflow jobs finished by one statement are released together.
--
-- Migration 9 released each finished workflow job from a row trigger: an ack of 200 outcomes ran
-- `oban_workflow_release` 200 times, about 0.7 ms each on an idle server, most of it planning its
-- two statements anew (plpgsql keeps custom plans for them: a generic plan guesses 10 ids for the
-- array and looks dearer), not the rows they read. Now the row triggers only note the job's id in a
-- transaction setting named after the table (`oban.workflow_finished_<oid>`, or
-- `oban.workflow_deleted_<oid>` for a delete), and a statement trigger releases every noted job in
-- one call once the statement's rows are written (a statement's row triggers fire before its
-- statement trigger). The function is unchanged: it already takes an array, locks the counters of
-- all their dependents in id order (two batches touching the same dependents queue up rather than
-- deadlock), and decrements each counter once per edge done, so the last two dependencies finishing
-- in two transactions still release a dependent exactly once.
-- The settings are cleared before the release runs, the release's own writes
-- (pg_trigger_depth() > 0) note nothing, and a statement that fails takes its notes with it.
-- Jobs outside workflows still never run a row trigger (its WHEN clause); each statement that
-- updates `state` or deletes jobs runs the statement trigger, which reads two settings and returns
-- (about 4 µs a statement). Not chosen: a WHEN clause on the statement trigger is evaluated before
-- the row triggers fire, so it cannot see the notes; a BEFORE row trigger would note in time but
-- makes every updated row of every job be locked first (about 4 µs a row); a transition table
-- copies every updated row of every job and cannot be limited to updates of `state`.

-- migrate:up
-- The row triggers of migration 9 stay as they are; their function now only notes the job.
CREATE OR REPLACE FUNCTION {{prefix}}.oban_workflow_settle() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
DECLARE
  noted text := CASE WHEN TG_OP = 'DELETE' THEN 'oban.workflow_deleted_' ELSE 'oban.workflow_finished_' END || TG_RELID;
BEGIN
  PERFORM set_config(noted, concat_ws(',', NULLIF(current_setting(noted, true), ''),
                                      CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END), true);
  RETURN NULL;
END
$$;

CREATE FUNCTION {{prefix}}.oban_workflow_settle_noted() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
DECLARE
  finished text := NULLIF(current_setting('oban.workflow_finished_' || TG_RELID, true), '');
  deleted text := NULLIF(current_setting('oban.workflow_deleted_' || TG_RELID, true), '');
BEGIN
  IF finished IS NULL AND deleted IS NULL THEN
    RETURN NULL;
  END IF;
  PERFORM set_config('oban.workflow_finished_' || TG_RELID, '', true),
          set_config('oban.workflow_deleted_' || TG_RELID, '', true);
  IF deleted IS NOT NULL THEN
    DELETE FROM {{prefix}}.oban_workflow_waits WHERE job_id = ANY(('{' || deleted || '}')::bigint[]);
  END IF;
  PERFORM {{prefix}}.oban_workflow_release(('{' || concat_ws(',', finished, deleted) || '}')::bigint[]);
  RETURN NULL;
END
$$;

-- Nested writes (pg_trigger_depth() > 0) are the release function's own: it settles them itself.
CREATE TRIGGER oban_jobs_workflow_settled
  AFTER UPDATE OF state OR DELETE ON {{prefix}}.oban_jobs
  FOR EACH STATEMENT
  WHEN (pg_trigger_depth() = 0)
  EXECUTE FUNCTION {{prefix}}.oban_workflow_settle_noted();

-- migrate:down
DROP TRIGGER oban_jobs_workflow_settled ON {{prefix}}.oban_jobs;
DROP FUNCTION {{prefix}}.oban_workflow_settle_noted();

CREATE OR REPLACE FUNCTION {{prefix}}.oban_workflow_settle() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    DELETE FROM {{prefix}}.oban_workflow_waits WHERE job_id = OLD.id;
    PERFORM {{prefix}}.oban_workflow_release(ARRAY[OLD.id]);
  ELSE
    PERFORM {{prefix}}.oban_workflow_release(ARRAY[NEW.id]);
  END IF;
  RETURN NULL;
END
$$;
