-- effect-oban migration 20: a queue paused on every node stays paused for nodes that start later.
--
-- A pause for every node used to live only in the producer rows of the nodes running when it was
-- given. A node that started afterwards (a rolling deploy, an autoscaled replica, a restart after a
-- clean shutdown, which removes its rows) ran the queue again at once. `paused_at` records the
-- pause on the queue's row in `oban_queues`, set by a pause for every node and cleared by a resume
-- for every node; a producer that registers while it is set starts paused. Commands for one node
-- leave it alone.
--
-- Every producer's registration now upserts its queue's row here (a row with no limits is an
-- unlimited queue, as before) and reads `paused_at` back from the row it locked, so a registration
-- and a pause for every node never miss each other: whichever locks the row second sees the other.
--
-- Adding a nullable column without a default rewrites nothing and takes its lock only briefly.

-- migrate:up
ALTER TABLE {{prefix}}.oban_queues ADD COLUMN paused_at timestamptz;

-- migrate:down
ALTER TABLE {{prefix}}.oban_queues DROP COLUMN paused_at;
