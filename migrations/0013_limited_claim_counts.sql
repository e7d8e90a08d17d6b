-- effect-oban migration 13: what a limited queue uses, counted after its claim took the queue's lock.
--
-- A claim of a queue with cluster-wide limits is one statement: it locks the queue's row in
-- oban_queues, counts what the queue uses (executing jobs per partition, the jobs claimed in the
-- current rate window) and claims what is left. In READ COMMITTED a statement sees the database as
-- of its own start, so a statement that waited for the lock would count from before the claim it
-- waited for committed, and claim past the limit. These two functions count for it instead: they
-- are VOLATILE PL/pgSQL, so each query they run takes a fresh snapshot, and the claim calls them
-- with a column of the locked row, so they run only once the lock is held. (Job rows that the
-- earlier claim took still look available to the statement; its FOR UPDATE SKIP LOCKED re-checks
-- each row it locks against the row's latest version, so it never takes one of them.)
--
-- oban_executing_counts: the queue's executing jobs per partition ('' for one partition of all
-- jobs; by 'worker' or by the text of one args key, '' when missing), except the jobs listed in
-- skip_ids/skip_claims: attempts that ended on the claiming node under that claim, whose outcome is
-- not written yet.
-- oban_rate_window_counts: the jobs claimed per partition in the rate window starting at
-- window_start (ms since the epoch).
-- oban_available_candidates: for a partitioned claim, the first `scan` available jobs of the queue
-- (in fetch order) outside the partitions already at their limit (`full_parts`, by the global
-- limit's partition) or out of quota (`spent_parts`, by the rate's partition), with the partition of
-- each. A partitioned claim ranks jobs per partition before it locks any, so it reads them here,
-- after the lock, rather than from its own snapshot, where the jobs the claim it waited for took
-- would still look available and be chosen in place of the ones left.

-- migrate:up
CREATE FUNCTION {{prefix}}.oban_executing_counts(
  queue_name text, part_by text, part_key text, skip_ids bigint[], skip_claims text[]
) RETURNS TABLE (part text, n integer)
  LANGUAGE plpgsql VOLATILE
  AS $$
BEGIN
  RETURN QUERY
    SELECT CASE part_by WHEN 'worker' THEN r.worker WHEN 'args' THEN COALESCE(r.args ->> part_key, '') ELSE '' END,
           count(*)::integer
    FROM {{prefix}}.oban_jobs AS r
    WHERE r.state = 'executing' AND r.queue = queue_name
      AND NOT EXISTS (
        SELECT 1 FROM unnest(skip_ids, skip_claims) AS f(id, claim)
        WHERE f.id = r.id AND f.claim = r.attempted_by[3]
      )
    GROUP BY 1;
END
$$;

CREATE FUNCTION {{prefix}}.oban_rate_window_counts(queue_name text, window_start bigint)
  RETURNS TABLE (part text, n integer)
  LANGUAGE plpgsql VOLATILE
  AS $$
BEGIN
  RETURN QUERY
    SELECT w."partition", w.count FROM {{prefix}}.oban_rate_windows AS w
    WHERE w.queue = queue_name AND w.window_start = oban_rate_window_counts.window_start;
END
$$;

CREATE FUNCTION {{prefix}}.oban_available_candidates(
  queue_name text, part_by text, part_key text, full_parts text[],
  rate_part_by text, rate_part_key text, spent_parts text[], scan integer
) RETURNS TABLE (id bigint, priority smallint, scheduled_at timestamptz, gp text, rp text)
  LANGUAGE plpgsql VOLATILE
  AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
    SELECT c.id, c.priority, c.scheduled_at, p.gp, p.rp
    FROM {{prefix}}.oban_jobs AS c,
         LATERAL (
           SELECT CASE part_by WHEN 'worker' THEN c.worker WHEN 'args' THEN COALESCE(c.args ->> part_key, '') ELSE '' END AS gp,
                  CASE rate_part_by WHEN 'worker' THEN c.worker WHEN 'args' THEN COALESCE(c.args ->> rate_part_key, '') ELSE '' END AS rp
         ) AS p
    WHERE c.state = 'available' AND c.queue = queue_name
      AND NOT (p.gp = ANY(full_parts)) AND NOT (p.rp = ANY(spent_parts))
    ORDER BY c.priority, c.scheduled_at, c.id
    LIMIT scan;
END
$$;

-- migrate:down
DROP FUNCTION {{prefix}}.oban_available_candidates(text, text, text, text[], text, text, text[], integer);
DROP FUNCTION {{prefix}}.oban_rate_window_counts(text, bigint);
DROP FUNCTION {{prefix}}.oban_executing_counts(text, text, text, bigint[], text[]);
