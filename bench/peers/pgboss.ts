/**
 * pg-boss 12, batched: one `work` loop per process fetches up to 500 jobs
 * at a time (`batchSize`, the size graphile-worker's preset and the raw-SQL
 * queue claim too) and fetches again at once while batches come back full
 * (`burstWhenBatchFull`); the handler runs its batch `limit` jobs at a time
 * and pg-boss completes the whole batch in one statement. Inserts use
 * `send` and the bulk `insert`. LISTEN/NOTIFY is on (`useListenNotify` and
 * a `notify` queue), so the latency workload is woken by notifications.
 * Supervision and cron scheduling are off in every instance, so no
 * maintenance runs during a measurement. Completed jobs stay in the table.
 */
import { PgBoss } from "pg-boss"
import { dropSchema, makeChecker, quoteIdent } from "./sql.ts"
import type { ConsumeOptions, JobData, Peer, PeerQueue } from "./types.ts"

const queueName = "bench_noop"
const batchSize = 500

const makeBoss = (url: string, schema: string, migrate: boolean) => {
  const boss = new PgBoss({
    connectionString: url,
    schema,
    max: 10,
    migrate,
    supervise: false,
    schedule: false,
    useListenNotify: true
  })
  boss.on("error", (error: unknown) => process.stderr.write(`[pg-boss] error: ${String(error)}\n`))
  return boss
}

/** Runs `run` over the items, at most `limit` at a time. */
const runLimited = async <A>(items: ReadonlyArray<A>, limit: number, run: (item: A) => Promise<void>) => {
  let next = 0
  const lane = async () => {
    while (next < items.length) await run(items[next++]!)
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane))
}

const consume = (boss: PgBoss) => async (options: ConsumeOptions) => {
  const polling = options.latency ? 10 : 0.5
  const workerId = await boss.work<JobData>(
    queueName,
    {
      batchSize,
      localConcurrency: 1,
      burstWhenBatchFull: true,
      pollingIntervalSeconds: polling,
      notifyPollingIntervalSeconds: polling
    },
    (jobs) => runLimited(jobs, options.limit, async (job) => options.onRun(job.data))
  )
  return {
    stop: () => boss.offWork(queueName, { id: workerId, wait: true })
  }
}

const open = async (url: string, schema: string): Promise<PeerQueue> => {
  const boss = makeBoss(url, schema, false)
  await boss.start()
  const checker = makeChecker(url)
  return {
    insertOne: async (job) => {
      await boss.send(queueName, job)
    },
    insertMany: async (jobs) => {
      await boss.insert(queueName, jobs.map((data) => ({ data })))
    },
    consume: consume(boss),
    count: async () => {
      const [row] = await checker.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM ${quoteIdent(schema)}.job WHERE name = $1`,
        [queueName]
      )
      return row?.n ?? 0
    },
    settled: async (expected) => {
      const [row] = await checker.query<{ completed: number; other: number }>(
        `SELECT (count(*) FILTER (WHERE state = 'completed'))::int AS completed,
                (count(*) FILTER (WHERE state <> 'completed'))::int AS other
         FROM ${quoteIdent(schema)}.job WHERE name = $1`,
        [queueName]
      )
      return row !== undefined && row.completed === expected && row.other === 0
    },
    close: async () => {
      try {
        await checker.end()
      } finally {
        await boss.stop({ graceful: true, timeout: 30_000 })
      }
    }
  }
}

export const pgBoss: Peer = {
  name: "pg-boss",
  key: "pgboss",
  setup: "12, batched: batchSize 500, burstWhenBatchFull, handler runs `limit` at a time, LISTEN/NOTIFY on",
  prepare: async (url, schema) => {
    await dropSchema(url, schema)
    const boss = makeBoss(url, schema, true)
    await boss.start()
    await boss.createQueue(queueName, { notify: true })
    await boss.stop({ graceful: true })
  },
  open,
  drop: dropSchema
}
