-- effect-oban migration 11: workflow jobs finished by one statement are released together.
--
-- Migration 9 released each finished workflow job from a row trigger: an ack of 200 outcomes ran
-- `oban_workflow_release` 200 times, each planning and starting its two statements anew (about
-- 0.7 ms a row on an idle server, most of it planning and executor start-up, not the rows read).
-- Now the row triggers only note the job's id in a transaction setting named after the table
-- (`oban.workflow_finished_<oid>`, or `..._deleted_<oid>` for a delete), and a statement trigger
-- releases every noted job in one call once the statement's rows are written (row triggers fire
-- before the statement trigger of the same statement). The function is unchanged: it already takes
-- an array, locks the dependents' counters of all of them in id order (so two batches touching the
-- same dependents queue up rather than deadlock), and decrements each counter once per edge done,
-- so the last two dependencies finishing in two transactions still release a dependent once.
-- The setting is cleared before the release runs, and the release's own writes
-- (pg_trigger_depth() > 0) note nothing; a setting left by an aborted statement is rolled back
-- with it. Jobs outside workflows still never run a row trigger (its WHEN clause); each UPDATE of
-- `state` and each DELETE statement on oban_jobs runs the statement trigger, which reads two
-- settings and returns.

-- migrate:up
DROP TRIGGER oban_jobs_workflow_finished ON {{prefix}}.oban_jobs;
DROP TRIGGER oban_jobs_workflow_deleted ON {{prefix}}.oban_jobs;

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
CREATE TRIGGER oban_jobs_workflow_finished
  AFTER UPDATE OF state ON {{prefix}}.oban_jobs
  FOR EACH ROW
  WHEN (NEW.workflow_id IS NOT NULL AND NEW.state IN ('completed', 'discarded', 'cancelled')
        AND OLD.state IS DISTINCT FROM NEW.state AND pg_trigger_depth() = 0)
  EXECUTE FUNCTION {{prefix}}.oban_workflow_settle();

CREATE TRIGGER oban_jobs_workflow_deleted
  AFTER DELETE ON {{prefix}}.oban_jobs
  FOR EACH ROW
  WHEN (OLD.workflow_id IS NOT NULL AND pg_trigger_depth() = 0)
  EXECUTE FUNCTION {{prefix}}.oban_workflow_settle();

CREATE TRIGGER oban_jobs_workflow_settled
  AFTER UPDATE OF state OR DELETE ON {{prefix}}.oban_jobs
  FOR EACH STATEMENT
  WHEN (pg_trigger_depth() = 0)
  EXECUTE FUNCTION {{prefix}}.oban_workflow_settle_noted();

-- migrate:down
DROP TRIGGER oban_jobs_workflow_settled ON {{prefix}}.oban_jobs;
DROP TRIGGER oban_jobs_workflow_deleted ON {{prefix}}.oban_jobs;
DROP TRIGGER oban_jobs_workflow_finished ON {{prefix}}.oban_jobs;
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

CREATE TRIGGER oban_jobs_workflow_finished
  AFTER UPDATE OF state ON {{prefix}}.oban_jobs
  FOR EACH ROW
  WHEN (NEW.workflow_id IS NOT NULL AND NEW.state IN ('completed', 'discarded', 'cancelled')
        AND OLD.state IS DISTINCT FROM NEW.state AND pg_trigger_depth() = 0)
  EXECUTE FUNCTION {{prefix}}.oban_workflow_settle();

CREATE TRIGGER oban_jobs_workflow_deleted
  AFTER DELETE ON {{prefix}}.oban_jobs
  FOR EACH ROW
  WHEN (OLD.workflow_id IS NOT NULL AND pg_trigger_depth() = 0)
  EXECUTE FUNCTION {{prefix}}.oban_workflow_settle();
