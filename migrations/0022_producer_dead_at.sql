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
-- A nullable column without a default rewrites nothing and takes its lock only briefly.

-- migrate:up
ALTER TABLE {{prefix}}.oban_producers ADD COLUMN dead_at timestamptz;

-- migrate:down
DELETE FROM {{prefix}}.oban_producers WHERE dead_at IS NOT NULL;
ALTER TABLE {{prefix}}.oban_producers DROP COLUMN dead_at;
