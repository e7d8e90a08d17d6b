-- effect-oban migration 4: liveness per producer incarnation.
-- A producer's row is keyed by its own id (the id written to attempted_by[2] of the jobs it claims),
-- so a process restarted under the same node name gets new rows and the rows of the crashed
-- incarnation go stale, which gets its orphans rescued. Two rows may now share (node, queue).
-- The leader lease records the incarnation (instance) that holds it, for the same reason.
-- Upgrade note: nodes of earlier releases cannot register producers after this migration
-- (they rely on the dropped unique key); stop them before migrating.

-- migrate:up
ALTER TABLE {{prefix}}.oban_producers DROP CONSTRAINT oban_producers_node_queue_unique;
CREATE INDEX oban_producers_node_queue_idx ON {{prefix}}.oban_producers (node, queue, updated_at);
ALTER TABLE {{prefix}}.oban_peers ADD COLUMN instance text;

-- migrate:down
ALTER TABLE {{prefix}}.oban_peers DROP COLUMN instance;
DROP INDEX {{prefix}}.oban_producers_node_queue_idx;
DELETE FROM {{prefix}}.oban_producers a USING {{prefix}}.oban_producers b
  WHERE a.node = b.node AND a.queue = b.queue AND a.updated_at < b.updated_at;
ALTER TABLE {{prefix}}.oban_producers
  ADD CONSTRAINT oban_producers_node_queue_unique UNIQUE (node, queue);
