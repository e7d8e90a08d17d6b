-- effect-oban migration 9: workflows (jobs that wait for other jobs).
--
-- A workflow job carries its workflow's id in `workflow_id` (NULL for every other job) and its step
-- name in meta.workflow.step. Each dependency is one row of oban_workflow_deps: the dependent
-- (`job_id`), the job it waits for (`dep_id`), and what happens to the dependent when that job is
-- discarded or cancelled (`on_failure`: 'cancel' it, 'run' it anyway, or 'wait' for a retry; or
-- 'failed': run it only if at least one of its 'failed' dependencies failed, else cancel it once they
-- have all finished, as a batch's failure callback).
-- A job with an unfinished dependency is `suspended`.
--
-- Release happens in the database, in the same transaction as the write that finishes a
-- dependency (an ack, a cancel, a rescue that discards, a delete), through a row trigger whose WHEN
-- clause is false for jobs outside workflows, so other jobs pay one NULL test per state change.
-- Its cost is that of the finished job's own edges, whatever the number of dependencies of its
-- dependents (a batch's callbacks wait on every job of the batch):
-- - an edge is marked `done` once, when its dependency completes (or fails under 'run' or 'failed'),
--   so a second completion or a repeated release never counts it twice;
-- - each dependent has one oban_workflow_waits row: how many of its edges are not done (`pending`),
--   whether it has 'failed' edges (`awaits_failure`), and how many of those were done by a failure
--   (`failures`). The finishing transaction decrements `pending` in an UPDATE, which waits for and
--   re-reads the row of a concurrent one: when two last dependencies finish at the same moment in
--   two transactions, the second sees 1 -> 0, so exactly one of them releases the dependent;
-- - a dependency that fails under 'cancel' cancels its suspended dependents at once (the verdict
--   needs no other edge), and a dependent whose `pending` reaches 0 is released, or cancelled as not
--   needed when it awaits a failure and none came, without reading its other edges.
-- Released jobs become `available` (or `scheduled`, when their own time is still ahead) and their
-- queues are notified on commit. Cancelled dependents settle their own dependents in turn (a loop,
-- not trigger recursion). "Now" is the transaction's `oban.now` setting when the writer set it (the
-- Effect clock in tests), else now(). A dependency that no longer exists counts as completed.
-- A manual retry of a step recomputes its edges and counters from its dependencies' states.
--
-- `result` holds a job's recorded result (JSON), written with its completion.

-- migrate:up
ALTER TABLE {{prefix}}.oban_jobs ADD COLUMN workflow_id text;
ALTER TABLE {{prefix}}.oban_jobs ADD COLUMN result jsonb;

CREATE UNIQUE INDEX oban_jobs_workflow_step_idx
  ON {{prefix}}.oban_jobs (workflow_id, (meta #>> '{workflow,step}'))
  WHERE workflow_id IS NOT NULL;
-- A workflow's jobs in order: status, cancel, retry, and the tail of a chain.
CREATE INDEX oban_jobs_workflow_idx
  ON {{prefix}}.oban_jobs (workflow_id, id)
  WHERE workflow_id IS NOT NULL;

CREATE TABLE {{prefix}}.oban_workflow_deps (
  job_id bigint NOT NULL,
  dep_id bigint NOT NULL,
  on_failure text NOT NULL DEFAULT 'cancel',
  done boolean NOT NULL DEFAULT false,
  PRIMARY KEY (dep_id, job_id),
  CONSTRAINT oban_workflow_deps_on_failure CHECK (on_failure IN ('cancel', 'run', 'wait', 'failed')),
  CONSTRAINT oban_workflow_deps_not_self CHECK (job_id <> dep_id)
);
CREATE INDEX oban_workflow_deps_job_idx ON {{prefix}}.oban_workflow_deps (job_id);

CREATE TABLE {{prefix}}.oban_workflow_waits (
  job_id bigint PRIMARY KEY,
  pending integer NOT NULL,
  awaits_failure boolean NOT NULL DEFAULT false,
  failures integer NOT NULL DEFAULT 0
);

CREATE FUNCTION {{prefix}}.oban_workflow_release(finished bigint[]) RETURNS void
  LANGUAGE plpgsql VOLATILE
  AS $$
DECLARE
  frontier bigint[] := finished;
  release_at timestamptz := COALESCE(NULLIF(current_setting('oban.now', true), '')::timestamptz, now());
  wake text := btrim('{{prefix}}', '"') || '.oban_insert';
BEGIN
  WHILE cardinality(frontier) > 0 LOOP
    -- The counters of the dependents still waiting on these jobs are locked in id order (two finishing
    -- transactions touching the same dependents queue up rather than deadlock); none: nothing to do.
    PERFORM 1 FROM {{prefix}}.oban_workflow_waits AS w
    WHERE w.job_id IN (SELECT e.job_id FROM {{prefix}}.oban_workflow_deps AS e
                       WHERE e.dep_id = ANY(frontier) AND NOT e.done)
    ORDER BY w.job_id
    FOR UPDATE;
    EXIT WHEN NOT FOUND;

    WITH finished_job AS (
      SELECT f.id, COALESCE(d.state::text, 'completed') AS state,
             jsonb_build_object('id', f.id, 'state', COALESCE(d.state::text, 'completed'),
                                'step', d.meta #>> '{workflow,step}') AS culprit
      FROM unnest(frontier) AS f(id)
      LEFT JOIN {{prefix}}.oban_jobs AS d ON d.id = f.id
    ),
    edge AS (
      SELECT e.job_id, e.dep_id, f.culprit,
             f.state = 'completed' OR (f.state IN ('discarded', 'cancelled') AND e.on_failure IN ('run', 'failed'))
               AS satisfied,
             f.state IN ('discarded', 'cancelled') AND e.on_failure = 'failed' AS failure,
             f.state IN ('discarded', 'cancelled') AND e.on_failure = 'cancel' AS cancels
      FROM {{prefix}}.oban_workflow_deps AS e
      JOIN finished_job AS f ON f.id = e.dep_id
      WHERE NOT e.done
    ),
    marked AS (
      UPDATE {{prefix}}.oban_workflow_deps AS e SET done = true
      FROM edge
      WHERE e.dep_id = edge.dep_id AND e.job_id = edge.job_id AND edge.satisfied AND NOT e.done
      RETURNING e.job_id, edge.failure
    ),
    counted AS (
      UPDATE {{prefix}}.oban_workflow_waits AS w
      SET pending = w.pending - m.n, failures = w.failures + m.failed
      FROM (SELECT job_id, count(*)::int AS n, count(*) FILTER (WHERE failure)::int AS failed
            FROM marked GROUP BY job_id) AS m
      WHERE w.job_id = m.job_id
      RETURNING w.job_id, w.pending, w.awaits_failure AND w.failures = 0 AS unneeded
    ),
    verdict AS (
      SELECT COALESCE(c.job_id, x.job_id) AS job_id, x.culprit, COALESCE(c.unneeded, false) AS unneeded
      FROM (SELECT job_id, unneeded FROM counted WHERE pending <= 0) AS c
      FULL JOIN (SELECT DISTINCT ON (job_id) job_id, culprit FROM edge WHERE cancels ORDER BY job_id, dep_id) AS x
        ON x.job_id = c.job_id
    ),
    settled AS (
      UPDATE {{prefix}}.oban_jobs AS j
      SET state = (CASE WHEN v.culprit IS NOT NULL OR v.unneeded THEN 'cancelled'
                        WHEN j.scheduled_at > release_at THEN 'scheduled' ELSE 'available' END)
                    ::{{prefix}}.oban_job_state,
          cancelled_at = CASE WHEN v.culprit IS NOT NULL OR v.unneeded THEN release_at ELSE j.cancelled_at END,
          meta = CASE WHEN v.culprit IS NOT NULL THEN jsonb_set(j.meta, '{workflow,cancelled_by}', v.culprit)
                      WHEN v.unneeded THEN jsonb_set(j.meta, '{workflow,skipped}', '"no dependency failed"'::jsonb)
                      ELSE j.meta END
      FROM verdict AS v
      WHERE j.id = v.job_id AND j.state = 'suspended'
      RETURNING j.id, j.state, j.queue
    ),
    woken AS (
      SELECT count(pg_notify(wake, json_build_object('queue', queue)::text)) AS sent
      FROM (SELECT DISTINCT queue FROM settled WHERE state = 'available') AS q
    )
    SELECT array_agg(settled.id) FILTER (WHERE settled.state = 'cancelled') INTO frontier
    FROM settled, woken;
    frontier := COALESCE(frontier, '{}');
  END LOOP;
END
$$;

CREATE FUNCTION {{prefix}}.oban_workflow_settle() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    DELETE FROM {{prefix}}.oban_workflow_waits WHERE job_id = OLD.id;
    PERFORM {{prefix}}.oban_workflow_release(ARRAY[OLD.id]);
  ELSE
    PERFORM {{prefix}}.oban_workflow_release(ARRAY[NEW.id]);
  END IF;
  RETURN NULL;
END
$$;

-- Nested writes (pg_trigger_depth() > 0) are the release function's own: it settles them itself.
CREATE TRIGGER oban_jobs_workflow_finished
  AFTER UPDATE OF state ON {{prefix}}.oban_jobs
  FOR EACH ROW
  WHEN (NEW.workflow_id IS NOT NULL AND NEW.state IN ('completed', 'discarded', 'cancelled')
        AND OLD.state IS DISTINCT FROM NEW.state AND pg_trigger_depth() = 0)
  EXECUTE FUNCTION {{prefix}}.oban_workflow_settle();

CREATE TRIGGER oban_jobs_workflow_deleted
  AFTER DELETE ON {{prefix}}.oban_jobs
  FOR EACH ROW
  WHEN (OLD.workflow_id IS NOT NULL AND pg_trigger_depth() = 0)
  EXECUTE FUNCTION {{prefix}}.oban_workflow_settle();

-- migrate:down
DROP TRIGGER oban_jobs_workflow_deleted ON {{prefix}}.oban_jobs;
DROP TRIGGER oban_jobs_workflow_finished ON {{prefix}}.oban_jobs;
DROP FUNCTION {{prefix}}.oban_workflow_settle();
DROP FUNCTION {{prefix}}.oban_workflow_release(bigint[]);
DROP TABLE {{prefix}}.oban_workflow_waits;
DROP TABLE {{prefix}}.oban_workflow_deps;
DROP INDEX {{prefix}}.oban_jobs_workflow_step_idx;
ALTER TABLE {{prefix}}.oban_jobs DROP COLUMN result;
ALTER TABLE {{prefix}}.oban_jobs DROP COLUMN workflow_id;
