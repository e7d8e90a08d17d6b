-- effect-oban migration 14: a step cancelled while it executed keeps the attempt it ran.
--
-- The trigger of migration 12 turns whatever ends an attempt whose cancel was requested into the
-- cancel. When that end is a give-back (the node shut down past its grace period, so the attempt
-- is handed back and its attempt number returned), the row was left with the lower attempt number
-- although the attempt ran and the job will never run again: a step that ran once read attempt 0.
-- Now the row keeps the higher of the two, as the trigger's `errors` entry already did.

-- migrate:up
CREATE OR REPLACE FUNCTION {{prefix}}.oban_cancel_requested() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
DECLARE
  at timestamptz := COALESCE(NULLIF(current_setting('oban.now', true), '')::timestamptz, now());
BEGIN
  NEW.attempt := GREATEST(OLD.attempt, NEW.attempt);
  NEW.errors := COALESCE(NEW.errors, '[]'::jsonb) || jsonb_build_array(jsonb_build_object(
    'attempt', NEW.attempt, 'at', at, 'kind', 'cancelled',
    'message', 'cancelled while executing; the attempt ended ' || NEW.state::text || ' after the cancel was requested'));
  NEW.state := 'cancelled';
  NEW.cancelled_at := at;
  NEW.completed_at := OLD.completed_at;
  NEW.discarded_at := OLD.discarded_at;
  NEW.result := OLD.result;
  RETURN NEW;
END
$$;

-- migrate:down
CREATE OR REPLACE FUNCTION {{prefix}}.oban_cancel_requested() RETURNS trigger
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
