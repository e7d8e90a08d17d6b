/**
 * BullMQ 6 on its PostgreSQL backend (`createPostgresBackend`, shipped in
 * the `bullmq` package since 6.0): one `Worker` per process with
 * `concurrency` = the workload's limit, inserts with `add` and `addBulk`,
 * each queue in its own schema. Options are BullMQ's defaults otherwise
 * (completed jobs are kept).
 */
import { createPostgresBackend, Queue, Worker, type PostgresPoolConfig } from "bullmq"
import { dropSchema } from "./sql.ts"
import type { ConsumeOptions, JobData, Peer, PeerQueue } from "./types.ts"

const queueName = "bench_noop"

const connection = (url: string, schema: string, migrate: boolean): PostgresPoolConfig => ({
  connectionString: url,
  schema,
  max: 10,
  migrate
})

const makeQueue = (url: string, schema: string, migrate: boolean) =>
  new Queue(queueName, { connection: connection(url, schema, migrate) }, createPostgresBackend)

const consume = (url: string, schema: string) => async (options: ConsumeOptions) => {
  const worker = new Worker(
    queueName,
    async (job: { readonly data: JobData }) => options.onRun(job.data),
    { connection: connection(url, schema, false), concurrency: options.limit },
    createPostgresBackend
  )
  worker.on("error", (error) => process.stderr.write(`[bullmq] worker error: ${String(error)}\n`))
  await worker.waitUntilReady()
  return { stop: () => worker.close() }
}

const open = async (url: string, schema: string): Promise<PeerQueue> => {
  const queue = makeQueue(url, schema, false)
  queue.on("error", (error) => process.stderr.write(`[bullmq] queue error: ${String(error)}\n`))
  await queue.waitUntilReady()
  return {
    insertOne: async (job) => {
      await queue.add(queueName, job satisfies JobData)
    },
    insertMany: async (jobs) => {
      await queue.addBulk(jobs.map((data) => ({ name: queueName, data })))
    },
    consume: consume(url, schema),
    count: async () => Object.values(await queue.getJobCounts()).reduce((sum, n) => sum + n, 0),
    settled: async (expected) => {
      const counts = await queue.getJobCounts()
      const other = Object.entries(counts).reduce((sum, [state, n]) => state === "completed" ? sum : sum + n, 0)
      return counts["completed"] === expected && other === 0
    },
    close: () => queue.close()
  }
}

export const bullmq: Peer = {
  name: "BullMQ (PostgreSQL)",
  key: "bullmq",
  setup: "6, PostgreSQL backend (createPostgresBackend), Worker concurrency = limit",
  prepare: async (url, schema) => {
    await dropSchema(url, schema)
    const queue = makeQueue(url, schema, true)
    await queue.waitUntilReady()
    await queue.close()
  },
  open,
  drop: dropSchema
}
