/**
 * A minimal queue in plain SQL on node-postgres, as a floor for what the
 * database allows: one table, a multi-row INSERT (`jsonb_array_elements`)
 * for bulk inserts, a statement-level trigger that NOTIFYs, claims of up to
 * 500 jobs with `FOR UPDATE SKIP LOCKED`, `limit` lanes running the claimed
 * jobs, and acks coalesced into one `DELETE ... WHERE id = ANY(...)` while
 * the previous one is in flight. No retries, no timeouts, no crash recovery:
 * it shows the cost of the bare round trips, not a usable library.
 *
 * `rawSqlKept` is the same queue keeping its finished jobs, as effect-oban
 * does without `deleteCompleted`: its ack moves the rows to a second table
 * (`DELETE ... RETURNING` into an INSERT, one statement) with the time they
 * finished, so a drain's database work includes writing each finished row.
 * It runs the drains only (its inserts and latency are raw SQL's).
 */
import pg from "pg"
import { dropSchema, makeChecker, query, quoteIdent } from "./sql.ts"
import type { ConsumeOptions, Consumer, JobData, Peer, PeerQueue } from "./types.ts"

const claimSize = 500

/** The queue's table and its index, in an existing schema, one statement each. */
export const tableDdl = (schema: string): ReadonlyArray<string> => {
  const s = quoteIdent(schema)
  return [
    `CREATE TABLE ${s}.jobs (id bigserial PRIMARY KEY, args jsonb NOT NULL, claimed_by text)`,
    `CREATE INDEX jobs_unclaimed ON ${s}.jobs (id) WHERE claimed_by IS NULL`
  ]
}

/** Where the kept variant moves finished jobs. */
const finishedDdl = (schema: string) =>
  `CREATE TABLE ${quoteIdent(schema)}.jobs_finished
     (id bigint PRIMARY KEY, args jsonb NOT NULL, claimed_by text, finished_at timestamptz NOT NULL)`

/** The statement that acks the jobs of `$1`: deletes them, or moves them to `jobs_finished`. */
const ackSql = (schema: string, keep: boolean) => {
  const table = `${quoteIdent(schema)}.jobs`
  return keep
    ? `WITH done AS (DELETE FROM ${table} WHERE id = ANY($1::bigint[]) RETURNING id, args, claimed_by)
       INSERT INTO ${quoteIdent(schema)}.jobs_finished SELECT id, args, claimed_by, now() FROM done`
    : `DELETE FROM ${table} WHERE id = ANY($1::bigint[])`
}

const ddl = (schema: string, keep: boolean) => {
  const s = quoteIdent(schema)
  return `
    CREATE SCHEMA ${s};
    ${[...tableDdl(schema), ...(keep ? [finishedDdl(schema)] : [])].join(";\n    ")};
    CREATE FUNCTION ${s}.notify_insert() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_notify(${pg.escapeLiteral(`${schema}_jobs`)}, ''); RETURN NULL; END $$;
    CREATE TRIGGER jobs_insert AFTER INSERT ON ${s}.jobs
      FOR EACH STATEMENT EXECUTE FUNCTION ${s}.notify_insert();`
}

interface Claimed {
  readonly id: string
  readonly args: JobData
}

/** Coalesces acks: ids pile up while one ack statement is in flight and go out together in the next. */
const makeAcker = (pool: pg.Pool, ack: string, onError: (error: unknown) => void) => {
  let pending: Array<string> = []
  let flushing: Promise<void> | undefined
  const loop = async () => {
    while (pending.length > 0) {
      const ids = pending
      pending = []
      await pool.query(ack, [ids])
    }
  }
  const flush = (): Promise<void> =>
    flushing ??= loop().catch(onError).finally(() => {
      flushing = undefined
    })
  return {
    ack: (id: string) => {
      pending.push(id)
      void flush()
    },
    drain: async () => {
      while (flushing !== undefined || pending.length > 0) await flush()
    }
  }
}

const consume = (url: string, schema: string, keep: boolean) => async (options: ConsumeOptions): Promise<Consumer> => {
  const table = `${quoteIdent(schema)}.jobs`
  const node = `raw-${process.pid}-${Math.random().toString(36).slice(2)}`
  const pool = new pg.Pool({ connectionString: url, max: 4 })
  const listener = new pg.Client({ connectionString: url })
  const failures: Array<unknown> = []
  const acker = makeAcker(pool, ackSql(schema, keep), (error) => failures.push(error))
  const buffer: Array<Claimed> = []
  let stopping = false
  let dirty = false
  let wakeUp = () => {}
  let woken = new Promise<void>((resolve) => (wakeUp = resolve))
  const wake = () => {
    dirty = true
    const resolve = wakeUp
    woken = new Promise<void>((next) => (wakeUp = next))
    resolve()
  }

  let fetching: Promise<void> | undefined
  const claim = async () => {
    dirty = false
    const result = await pool.query<Claimed>(
      `UPDATE ${table} SET claimed_by = $1
       WHERE id IN (SELECT id FROM ${table} WHERE claimed_by IS NULL ORDER BY id LIMIT ${claimSize} FOR UPDATE SKIP LOCKED)
       RETURNING id, args`,
      [node]
    )
    buffer.push(...result.rows)
  }
  const fetchMore = (): Promise<void> =>
    fetching ??= claim().finally(() => {
      fetching = undefined
    })

  const lane = async () => {
    while (!stopping) {
      const job = buffer.shift()
      if (job !== undefined) {
        await (async () => options.onRun(job.args))()
        acker.ack(job.id)
        continue
      }
      await fetchMore()
      if (buffer.length === 0 && !stopping && !dirty) await woken
    }
  }

  await listener.connect()
  listener.on("notification", wake)
  await listener.query(`LISTEN ${quoteIdent(`${schema}_jobs`)}`)
  const poll = setInterval(wake, options.latency ? 10_000 : 1_000)
  const lanes = Promise.all(Array.from({ length: options.limit }, lane))

  return {
    stop: async () => {
      stopping = true
      wake()
      clearInterval(poll)
      await lanes
      await acker.drain()
      if (buffer.length > 0) {
        await pool.query(`UPDATE ${table} SET claimed_by = NULL WHERE id = ANY($1::bigint[])`, [buffer.map((job) => job.id)])
      }
      await listener.end()
      await pool.end()
      if (failures.length > 0) throw new Error(`raw SQL acks failed: ${String(failures[0])}`)
    }
  }
}

const open = (keep: boolean) => async (url: string, schema: string): Promise<PeerQueue> => {
  const table = `${quoteIdent(schema)}.jobs`
  const pool = new pg.Pool({ connectionString: url, max: 10 })
  const checker = makeChecker(url)
  return {
    insertOne: async (job) => {
      await pool.query(`INSERT INTO ${table} (args) VALUES ($1)`, [job])
    },
    insertMany: async (jobs) => {
      await pool.query(`INSERT INTO ${table} (args) SELECT value FROM jsonb_array_elements($1::jsonb)`, [JSON.stringify(jobs)])
    },
    consume: consume(url, schema, keep),
    count: async () => {
      const [row] = await checker.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`)
      return row?.n ?? 0
    },
    settled: async () => {
      const [row] = await checker.query<{ left: boolean }>(`SELECT EXISTS (SELECT 1 FROM ${table}) AS left`)
      return row?.left === false
    },
    close: async () => {
      try {
        await checker.end()
      } finally {
        await pool.end()
      }
    }
  }
}

const prepare = (keep: boolean) => async (url: string, schema: string) => {
  await dropSchema(url, schema)
  await query(url, ddl(schema, keep))
}

export const rawSql: Peer = {
  name: "raw SQL",
  key: "raw",
  setup: "node-postgres, claims 500 (SKIP LOCKED), coalesced DELETE acks, multi-row INSERT, NOTIFY trigger",
  prepare: prepare(false),
  open: open(false),
  drop: dropSchema
}

export const rawSqlKept: Peer = {
  name: "raw SQL, finished kept",
  key: "raw-kept",
  setup: "raw SQL whose coalesced acks move finished jobs to a second table (DELETE ... RETURNING into INSERT); drains only",
  drainsOnly: true,
  prepare: prepare(true),
  open: open(true),
  drop: dropSchema
}
