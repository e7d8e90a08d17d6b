-- effect-oban migration 15: statements that finish no workflow job run no trigger function.
--
-- Since migration 11 every statement that updates `state` ran the statement trigger
-- `oban_jobs_workflow_settled`, which read two settings and returned when no workflow job had
-- finished: every claim and every ack. Cheap on a warm connection (a few µs), but the first call on
-- a new PostgreSQL backend loads and initialises PL/pgSQL and compiles the function: about 5 ms of
-- the server's CPU on the first claim of each new connection (the first claim of a fresh backend
-- took 5-7 ms less with the trigger dropped, measured 2026-12-02 on PostgreSQL 15).
--
-- Migration 11 could not give the statement trigger a WHEN clause: that clause is evaluated when
-- the statement's rows are written, before the AFTER row triggers that note finished jobs fire. Now
-- the note of a finished job is taken by a BEFORE row trigger, so it is in place when the clause is
-- evaluated, and the statement trigger of updates fires only when the statement noted a job.
-- Migration 11 rejected a BEFORE row trigger because it makes every updated row be locked before
-- its update; since migration 12 (`oban_jobs_cancel_requested`) every update of `state` pays that
-- already, so the new trigger adds only its WHEN test per row. It is named to fire after the cancel
-- trigger (BEFORE row triggers fire in name order), so it sees the state the row will be written
-- with. A row noted by a statement that then fails leaves no note behind: the setting is
-- transaction-local and goes with the failed (sub)transaction. The release reads each noted job's
-- current state, so a note is never taken for more than the row says.
-- Deletes are unchanged (an AFTER row trigger notes, a statement trigger without condition
-- releases): a BEFORE delete trigger would lock every deleted row first, which no delete pays today.

-- migrate:up
-- Returns NEW: a BEFORE row trigger that returns NULL would skip the row (for the AFTER delete
-- trigger the value is ignored, and NEW is NULL there).
CREATE OR REPLACE FUNCTION {{prefix}}.oban_workflow_settle() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
DECLARE
  noted text := CASE WHEN TG_OP = 'DELETE' THEN 'oban.workflow_deleted_' ELSE 'oban.workflow_finished_' END || TG_RELID;
BEGIN
  PERFORM set_config(noted, concat_ws(',', NULLIF(current_setting(noted, true), ''),
                                      CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END), true);
  RETURN NEW;
END
$$;

DROP TRIGGER oban_jobs_workflow_finished ON {{prefix}}.oban_jobs;
CREATE TRIGGER oban_jobs_workflow_finished
  BEFORE UPDATE OF state ON {{prefix}}.oban_jobs
  FOR EACH ROW
  WHEN (NEW.workflow_id IS NOT NULL AND NEW.state IN ('completed', 'discarded', 'cancelled')
        AND OLD.state IS DISTINCT FROM NEW.state AND pg_trigger_depth() = 0)
  EXECUTE FUNCTION {{prefix}}.oban_workflow_settle();

DROP TRIGGER oban_jobs_workflow_settled ON {{prefix}}.oban_jobs;
CREATE TRIGGER oban_jobs_workflow_settled
  AFTER DELETE ON {{prefix}}.oban_jobs
  FOR EACH STATEMENT
  WHEN (pg_trigger_depth() = 0)
  EXECUTE FUNCTION {{prefix}}.oban_workflow_settle_noted();

-- The setting the row trigger writes, named after the table as the function names it (TG_RELID).
CREATE TRIGGER oban_jobs_workflow_settled_update
  AFTER UPDATE OF state ON {{prefix}}.oban_jobs
  FOR EACH STATEMENT
  WHEN (pg_trigger_depth() = 0
        AND current_setting('oban.workflow_finished_' || '{{prefix}}.oban_jobs'::regclass::oid, true) <> '')
  EXECUTE FUNCTION {{prefix}}.oban_workflow_settle_noted();

-- migrate:down
DROP TRIGGER oban_jobs_workflow_settled_update ON {{prefix}}.oban_jobs;
DROP TRIGGER oban_jobs_workflow_settled ON {{prefix}}.oban_jobs;
CREATE TRIGGER oban_jobs_workflow_settled
  AFTER UPDATE OF state OR DELETE ON {{prefix}}.oban_jobs
  FOR EACH STATEMENT
  WHEN (pg_trigger_depth() = 0)
  EXECUTE FUNCTION {{prefix}}.oban_workflow_settle_noted();

DROP TRIGGER oban_jobs_workflow_finished ON {{prefix}}.oban_jobs;
CREATE TRIGGER oban_jobs_workflow_finished
  AFTER UPDATE OF state ON {{prefix}}.oban_jobs
  FOR EACH ROW
  WHEN (NEW.workflow_id IS NOT NULL AND NEW.state IN ('completed', 'discarded', 'cancelled')
        AND OLD.state IS DISTINCT FROM NEW.state AND pg_trigger_depth() = 0)
  EXECUTE FUNCTION {{prefix}}.oban_workflow_settle();

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
