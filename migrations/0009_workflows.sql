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
-- oban_workflow_release locks the suspended dependents (in id order) before it reads the states of
-- their dependencies in a new statement, so when two dependencies finish at the same moment in two
-- transactions, the second waits for the first, then sees both finished: exactly one of them
-- releases the dependent. Released jobs become `available` (or `scheduled`, when their own time is
-- still ahead) and their queues are notified on commit. A dependent whose dependency failed under
-- 'cancel' is cancelled, and its own dependents are settled in turn (a loop, not trigger recursion).
-- "Now" is the transaction's `oban.now` setting when the writer set it (the Effect clock in tests),
-- else now(). A dependency that no longer exists counts as completed.
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
  PRIMARY KEY (dep_id, job_id),
  CONSTRAINT oban_workflow_deps_on_failure CHECK (on_failure IN ('cancel', 'run', 'wait', 'failed')),
  CONSTRAINT oban_workflow_deps_not_self CHECK (job_id <> dep_id)
);
CREATE INDEX oban_workflow_deps_job_idx ON {{prefix}}.oban_workflow_deps (job_id);

CREATE FUNCTION {{prefix}}.oban_workflow_release(finished bigint[]) RETURNS void
  LANGUAGE plpgsql VOLATILE
  AS $$
DECLARE
  frontier bigint[] := finished;
  locked bigint[];
  release_at timestamptz := COALESCE(NULLIF(current_setting('oban.now', true), '')::timestamptz, now());
  wake text := btrim('{{prefix}}', '"') || '.oban_insert';
BEGIN
  WHILE cardinality(frontier) > 0 LOOP
    -- Lock the suspended dependents first; the states of their dependencies are read afterwards, in a
    -- new statement (a new snapshot), so a dependency finished by a transaction we waited for is seen.
    SELECT array_agg(id) INTO locked FROM (
      SELECT j.id FROM {{prefix}}.oban_jobs AS j
      WHERE j.id IN (SELECT e.job_id FROM {{prefix}}.oban_workflow_deps AS e WHERE e.dep_id = ANY(frontier))
        AND j.state = 'suspended'
      ORDER BY j.id
      FOR UPDATE OF j
    ) AS s;
    EXIT WHEN locked IS NULL;

    WITH verdict AS (
      SELECT e.job_id,
             bool_or(d.state IN ('discarded', 'cancelled') AND e.on_failure = 'cancel') AS cancel,
             bool_or(d.id IS NOT NULL AND d.state <> 'completed'
                     AND NOT (d.state IN ('discarded', 'cancelled') AND e.on_failure IN ('run', 'failed'))) AS blocked,
             -- 'failed' edges: the dependent runs only if one of them failed (a batch's failure callback).
             bool_or(e.on_failure = 'failed') AND NOT bool_or(e.on_failure = 'failed' AND d.state IN ('discarded', 'cancelled'))
               AS unneeded,
             (array_agg(jsonb_build_object('id', d.id, 'state', d.state, 'step', d.meta #>> '{workflow,step}')
                ORDER BY d.id) FILTER (WHERE d.state IN ('discarded', 'cancelled') AND e.on_failure = 'cancel'))[1]
               AS culprit
      FROM {{prefix}}.oban_workflow_deps AS e
      LEFT JOIN {{prefix}}.oban_jobs AS d ON d.id = e.dep_id
      WHERE e.job_id = ANY(locked)
      GROUP BY e.job_id
    ),
    settled AS (
      UPDATE {{prefix}}.oban_jobs AS j
      SET state = (CASE WHEN v.cancel OR v.unneeded THEN 'cancelled' WHEN j.scheduled_at > release_at THEN 'scheduled' ELSE 'available' END)
                    ::{{prefix}}.oban_job_state,
          cancelled_at = CASE WHEN v.cancel OR (v.unneeded AND NOT v.blocked) THEN release_at ELSE j.cancelled_at END,
          meta = CASE WHEN v.cancel THEN jsonb_set(j.meta, '{workflow,cancelled_by}', v.culprit)
                      WHEN v.unneeded THEN jsonb_set(j.meta, '{workflow,skipped}', '"no dependency failed"'::jsonb)
                      ELSE j.meta END
      FROM verdict AS v
      WHERE j.id = v.job_id AND (v.cancel OR NOT v.blocked)
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
DROP TABLE {{prefix}}.oban_workflow_deps;
DROP INDEX {{prefix}}.oban_jobs_workflow_step_idx;
ALTER TABLE {{prefix}}.oban_jobs DROP COLUMN result;
ALTER TABLE {{prefix}}.oban_jobs DROP COLUMN workflow_id;
