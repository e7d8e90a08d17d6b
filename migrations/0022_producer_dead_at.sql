-- effect-oban migration 22: the rescuer marks a dead producer's row instead of removing it.
--
-- A command for one node (`pauseQueue(queue, { node })`, a scale) is stored in that node's producer
-- rows and signalled. A node cut off from the database misses the signal; if the cut lasts longer
-- than `rescueAfter`, the rescuer used to remove its rows, and the command with them: the node came
-- back with the state it had. Now the rescuer sets `dead_at` (its jobs are rescued as before) and
-- keeps the row, with the commands stored in it, for a while (`rescuer.forgetAfter`, a day by
-- default); a node that comes back within that time takes its row again, in the state the commands
-- left it. Views and heartbeats read only rows whose `dead_at` is null.
--
-- Only rows that say they can come back from the mark (`revivable`, set by the registrations of this
-- release) are marked: a node of an earlier release refreshes its row whatever its mark, and would
-- take a marked row as its own again without dropping the jobs it had claimed ahead, which the
-- rescuer has given to others. Its rows are removed as before, so it registers again.
--
-- Nullable or constant-default columns rewrite nothing and take their lock only briefly.

-- migrate:up
ALTER TABLE {{prefix}}.oban_producers ADD COLUMN dead_at timestamptz;
ALTER TABLE {{prefix}}.oban_producers ADD COLUMN revivable boolean NOT NULL DEFAULT false;

-- migrate:down
DELETE FROM {{prefix}}.oban_producers WHERE dead_at IS NOT NULL;
ALTER TABLE {{prefix}}.oban_producers DROP COLUMN revivable;
ALTER TABLE {{prefix}}.oban_producers DROP COLUMN dead_at;
