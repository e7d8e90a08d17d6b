/**
 * graphile-worker 0.18 with the configuration of its performance page
 * (https://worker.graphile.org/docs/performance): a local queue of 500 jobs
 * fetched and locked in one go, and completions / failures batched
 * (`completeJobBatchDelay: 0`, `failJobBatchDelay: 0`). Concurrency is the
 * workload's limit; the pool has `max(10, limit + 2)` connections, as its
 * docs recommend. Completed jobs are deleted, so "settled" means an empty
 * jobs table.
 */
import { Logger, makeWorkerUtils, run, runMigrations, type Task } from "graphile-worker"
import { dropSchema, makeChecker, quoteIdent } from "./sql.ts"
import type { ConsumeOptions, JobData, Peer, PeerQueue } from "./types.ts"

/** Logs errors and warnings only (its default logger prints every start and stop). */
const quietLogger = new Logger(() => (level, message) => {
  if (level === "error" || level === "warning") process.stderr.write(`[graphile-worker] ${level}: ${message}\n`)
})

const taskName = "bench_noop"

const consume = (url: string, schema: string) => async (options: ConsumeOptions) => {
  const noop: Task = (payload) => {
    options.onRun(payload as JobData)
  }
  const runner = await run({
    connectionString: url,
    schema,
    logger: quietLogger,
    noHandleSignals: true,
    taskList: { [taskName]: noop },
    preset: {
      worker: {
        concurrentJobs: options.limit,
        maxPoolSize: Math.max(10, options.limit + 2),
        pollInterval: options.latency ? 10_000 : 2_000,
        localQueue: { size: 500 },
        completeJobBatchDelay: 0,
        failJobBatchDelay: 0
      }
    }
  })
  return {
    stop: async () => {
      await runner.stop()
      await runner.promise
    }
  }
}

const open = async (url: string, schema: string): Promise<PeerQueue> => {
  const utils = await makeWorkerUtils({ connectionString: url, schema, logger: quietLogger })
  const checker = makeChecker(url)
  return {
    insertOne: async (job) => {
      await utils.addJob(taskName, job)
    },
    insertMany: async (jobs) => {
      await utils.addJobs(jobs.map((job) => ({ identifier: taskName, payload: job })))
    },
    consume: consume(url, schema),
    count: async () => {
      const [row] = await checker.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${quoteIdent(schema)}._private_jobs`)
      return row?.n ?? 0
    },
    settled: async () => {
      const [row] = await checker.query<{ left: boolean }>(
        `SELECT EXISTS (SELECT 1 FROM ${quoteIdent(schema)}._private_jobs) AS left`
      )
      return row?.left === false
    },
    close: async () => {
      try {
        await checker.end()
      } finally {
        await utils.release()
      }
    }
  }
}

export const graphileWorker: Peer = {
  name: "graphile-worker",
  key: "graphile",
  setup: "0.18, performance preset: localQueue 500, completeJobBatchDelay 0, concurrentJobs = limit",
  prepare: async (url, schema) => {
    await dropSchema(url, schema)
    await runMigrations({ connectionString: url, schema, logger: quietLogger })
  },
  open,
  drop: dropSchema
}
