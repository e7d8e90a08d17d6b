-- effect-oban migration 19: the workflow notes share one setting per kind, each note naming its table.
--
-- Since migration 15 the statement trigger `oban_jobs_workflow_settled_update` fires only when a
-- row of the statement noted a finished workflow job, by a WHEN clause that reads the setting
-- `oban.workflow_finished_<oid of oban_jobs>`. PostgreSQL parses and plans a trigger's WHEN clause
-- again in every statement that fires the trigger, and that name was built by the clause itself
-- (`'<prefix>.oban_jobs'::regclass::oid`, a catalog lookup when it is folded): about 5 µs of the
-- 38 µs the server spent executing an update of one job (PostgreSQL 15, PL/pgSQL loop of 10,000),
-- in every claim and every outcome that updates rows.
--
-- Now every table notes into the same two settings, `oban.workflow_finished` and
-- `oban.workflow_deleted`, as `<oid of the table>:<job id>`, and the clause reads a constant name.
-- The statement trigger takes its own table's notes and leaves the others': a statement that
-- finishes workflow jobs of two prefixes at once releases each in its own prefix, as before.
-- Naming the setting after the schema instead would have kept one setting per table, but a schema
-- renamed later would leave the clause reading a name nothing writes any more, and a literal OID
-- does not survive a dump and restore; a note carries the OID the row trigger reads at run time.
-- Notes live only within a statement (the statement trigger clears them, and a failed statement
-- takes its notes with it), so none written under the old names can be pending when this runs.

-- migrate:up
CREATE OR REPLACE FUNCTION {{prefix}}.oban_workflow_settle() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
DECLARE
  noted text := CASE WHEN TG_OP = 'DELETE' THEN 'oban.workflow_deleted' ELSE 'oban.workflow_finished' END;
BEGIN
  PERFORM set_config(noted, concat_ws(',', NULLIF(current_setting(noted, true), ''),
                                      TG_RELID || ':' || CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END), true);
  RETURN NEW;
END
$$;

-- The ids noted for this table (NULL if none), leaving the other tables' notes in the setting.
CREATE FUNCTION {{prefix}}.oban_workflow_take_notes(setting text, relid oid) RETURNS bigint[]
  LANGUAGE plpgsql
  AS $$
DECLARE
  notes text[] := string_to_array(NULLIF(current_setting(setting, true), ''), ',');
  mine text := relid || ':';
  taken bigint[];
  rest text;
BEGIN
  IF notes IS NULL THEN
    RETURN NULL;
  END IF;
  SELECT array_agg(substr(note, length(mine) + 1)::bigint) FILTER (WHERE starts_with(note, mine)),
         string_agg(note, ',') FILTER (WHERE NOT starts_with(note, mine))
    INTO taken, rest
    FROM unnest(notes) AS note;
  PERFORM set_config(setting, COALESCE(rest, ''), true);
  RETURN taken;
END
$$;

-- Every top-level delete runs this (the delete trigger has no condition that could see the notes):
-- with nothing noted it reads the two settings and returns.
CREATE OR REPLACE FUNCTION {{prefix}}.oban_workflow_settle_noted() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
DECLARE
  finished bigint[];
  deleted bigint[];
BEGIN
  IF COALESCE(current_setting('oban.workflow_finished', true), '') = ''
     AND COALESCE(current_setting('oban.workflow_deleted', true), '') = '' THEN
    RETURN NULL;
  END IF;
  finished := {{prefix}}.oban_workflow_take_notes('oban.workflow_finished', TG_RELID);
  deleted := {{prefix}}.oban_workflow_take_notes('oban.workflow_deleted', TG_RELID);
  IF finished IS NULL AND deleted IS NULL THEN
    RETURN NULL;
  END IF;
  IF deleted IS NOT NULL THEN
    DELETE FROM {{prefix}}.oban_workflow_waits WHERE job_id = ANY(deleted);
  END IF;
  PERFORM {{prefix}}.oban_workflow_release(COALESCE(finished, '{}') || COALESCE(deleted, '{}'));
  RETURN NULL;
END
$$;

DROP TRIGGER oban_jobs_workflow_settled_update ON {{prefix}}.oban_jobs;
CREATE TRIGGER oban_jobs_workflow_settled_update
  AFTER UPDATE OF state ON {{prefix}}.oban_jobs
  FOR EACH STATEMENT
  WHEN (pg_trigger_depth() = 0 AND current_setting('oban.workflow_finished', true) <> '')
  EXECUTE FUNCTION {{prefix}}.oban_workflow_settle_noted();

-- migrate:down
DROP TRIGGER oban_jobs_workflow_settled_update ON {{prefix}}.oban_jobs;
CREATE TRIGGER oban_jobs_workflow_settled_update
  AFTER UPDATE OF state ON {{prefix}}.oban_jobs
  FOR EACH STATEMENT
  WHEN (pg_trigger_depth() = 0
        AND current_setting('oban.workflow_finished_' || '{{prefix}}.oban_jobs'::regclass::oid, true) <> '')
  EXECUTE FUNCTION {{prefix}}.oban_workflow_settle_noted();

CREATE OR REPLACE FUNCTION {{prefix}}.oban_workflow_settle_noted() RETURNS trigger
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

DROP FUNCTION {{prefix}}.oban_workflow_take_notes(text, oid);

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
