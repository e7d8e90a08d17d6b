-- effect-oban migration 21: a node back from a long outage knows whether it missed a pause or resume
-- for every node.
--
-- A node cut off for longer than `rescueAfter` loses its producer rows to the rescuer, and with them
-- any command for every node given meanwhile (the command updates the rows there are and signals the
-- nodes that listen). When the node registers again it needs to know whether such a command came:
-- if none did, its own state stands (a pause or resume for that node alone, its configuration); if
-- one did, it takes the queue's pause (`paused_at`, migration 20) as the nodes that saw the command
-- did. `pause_commands` counts the pauses and resumes for every node the queue has had; a node
-- remembers the count it last read (at registration and at every heartbeat) and compares.
--
-- A column with a constant default rewrites nothing and takes its lock only briefly.

-- migrate:up
ALTER TABLE {{prefix}}.oban_queues ADD COLUMN pause_commands bigint NOT NULL DEFAULT 0;

-- migrate:down
ALTER TABLE {{prefix}}.oban_queues DROP COLUMN pause_commands;
