/**
 * A thread worker for test/threadPriority.test.ts: its result is the nice
 * value of the thread (or process) that ran it, read from /proc, where Linux
 * keeps it per thread. Imported by each thread: starts nothing at import.
 */
import * as Effect from "effect/Effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Schema from "effect/Schema"
import { readFileSync, readlinkSync } from "node:fs"
import { threadId } from "node:worker_threads"
import * as Oban from "../../src/Oban.ts"
import * as Worker from "../../src/Worker.ts"
import { jobRow, startNode, waitFor } from "./node.ts"

export const queue = "priority"

/** The nice value of the calling thread: field 19 of /proc/<pid>/task/<tid>/stat. */
export const ownNice = (): number => {
  const stat = readFileSync(`/proc/${readlinkSync("/proc/thread-self")}/stat`, "utf8")
  // The command name (field 2) may hold spaces; the fields after it are plain numbers.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return Number(fields[16])
}

export const Nice = Worker.make("PriorityNice", {
  args: Schema.Struct({}),
  result: Schema.Struct({ nice: Schema.Int, pid: Schema.Int, threadId: Schema.Int }),
  queue,
  threads: { module: import.meta.url },
  perform: () => Effect.sync(() => ({ nice: ownNice(), pid: process.pid, threadId }))
})

/** Runs one `Nice` job on a node with these thread options; returns where it ran and at what nice value. */
export const niceOfAJob = (prefix: string, threads: Parameters<typeof startNode>[0]["threads"]) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const node = yield* startNode({ prefix, queues: { [queue]: 1 }, workers: [Nice], pollInterval: "100 millis", threads })
    const job = yield* Oban.insert(Nice.job({}))
    yield* waitFor("the job to complete", Effect.map(jobRow(prefix, job.id), (row) => row.state === "completed"))
    const [row] = yield* sql<{ result: { nice: number; pid: number; threadId: number } }>`
      SELECT result FROM ${sql(prefix)}.oban_jobs_all WHERE id = ${job.id}`
    yield* node.stop
    return row!.result
  }).pipe(Effect.scoped)
