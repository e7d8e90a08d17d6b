-- effect-oban migration 12: cancel requests for executing workflow steps.
--
-- A workflow step that is cancelled while it executes must not release its dependents (the next job
-- of a chain) while its code still runs on its node. So such a cancel does not finish the row: it
-- writes `cancel_requested_at` and signals the node, and the row stays `executing` until the attempt
-- has ended. Whatever then moves the row out of `executing` makes it `cancelled`:
-- - the node's outcome: `cancelled` when the interrupt stopped it; any other outcome (completed,
--   failed, snoozed, given back at shutdown) when the attempt ended before the interrupt came;
-- - the rescuer, when the node died; the node's reconciler, when its outcome was lost; the give-back
--   of a job that was claimed ahead and never started.
-- The trigger below turns each of those writes into the cancel, with an `errors` entry saying what
-- the attempt ended as, so a job cancelled while executing never runs again; the workflow trigger of
-- migration 0009 then settles its dependents in the same transaction. Retrying the job clears the
-- request. Its WHEN clause is false for every row without a request: other writes pay one NULL test.

-- migrate:up
ALTER TABLE {{prefix}}.oban_jobs ADD COLUMN cancel_requested_at timestamptz;

CREATE FUNCTION {{prefix}}.oban_cancel_requested() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
DECLARE
  at timestamptz := COALESCE(NULLIF(current_setting('oban.now', true), '')::timestamptz, now());
BEGIN
  NEW.errors := COALESCE(NEW.errors, '[]'::jsonb) || jsonb_build_array(jsonb_build_object(
    'attempt', GREATEST(OLD.attempt, NEW.attempt), 'at', at, 'kind', 'cancelled',
    'message', 'cancelled while executing; the attempt ended ' || NEW.state::text || ' after the cancel was requested'));
  NEW.state := 'cancelled';
  NEW.cancelled_at := at;
  NEW.completed_at := OLD.completed_at;
  NEW.discarded_at := OLD.discarded_at;
  NEW.result := OLD.result;
  RETURN NEW;
END
$$;

CREATE TRIGGER oban_jobs_cancel_requested
  BEFORE UPDATE OF state ON {{prefix}}.oban_jobs
  FOR EACH ROW
  WHEN (OLD.cancel_requested_at IS NOT NULL AND OLD.state = 'executing'
        AND NEW.state NOT IN ('executing', 'cancelled'))
  EXECUTE FUNCTION {{prefix}}.oban_cancel_requested();

-- migrate:down
DROP TRIGGER oban_jobs_cancel_requested ON {{prefix}}.oban_jobs;
DROP FUNCTION {{prefix}}.oban_cancel_requested();
ALTER TABLE {{prefix}}.oban_jobs DROP COLUMN cancel_requested_at;
