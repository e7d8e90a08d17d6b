-- effect-oban migration 2: the coordination tables.
-- oban_peers holds the leader lease; oban_producers one row per running queue producer.

-- migrate:up
CREATE TABLE {{prefix}}.oban_peers (
  name text PRIMARY KEY,
  node text NOT NULL,
  started_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL
);

CREATE TABLE {{prefix}}.oban_producers (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  node text NOT NULL,
  queue text NOT NULL,
  "limit" integer NOT NULL,
  paused boolean NOT NULL DEFAULT false,
  meta jsonb NOT NULL DEFAULT '{}'::jsonb,
  started_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT oban_producers_node_queue_unique UNIQUE (node, queue),
  CONSTRAINT oban_producers_limit_positive CHECK ("limit" >= 1),
  CONSTRAINT oban_producers_node_length CHECK (char_length(node) BETWEEN 1 AND 255),
  CONSTRAINT oban_producers_queue_length CHECK (char_length(queue) BETWEEN 1 AND 128)
);

CREATE INDEX oban_producers_updated_at_idx ON {{prefix}}.oban_producers (updated_at);

-- migrate:down
DROP TABLE {{prefix}}.oban_producers;
DROP TABLE {{prefix}}.oban_peers;
