-- effect-oban migration 17: a lease row says what its holder runs.
--
-- The cron lease's holder writes its crontab here, so that `Cluster.view`, the CLI's `cron` and the
-- dashboard can list the entries being run even when the node that runs them has no queues (a
-- scheduler-only node has no producer row, where a node's crontab is otherwise reported). NULL for
-- rows written by earlier releases and for the leader's lease. Adding a nullable column without a
-- default rewrites nothing and takes its lock only briefly.

-- migrate:up
ALTER TABLE {{prefix}}.oban_peers ADD COLUMN meta jsonb;

-- migrate:down
ALTER TABLE {{prefix}}.oban_peers DROP COLUMN meta;
