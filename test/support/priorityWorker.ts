/**
 * A thread worker for test/threadPriority.test.ts: its result is the nice
 * value of the thread (or process) that ran it, read from /proc, where Linux
 * keeps it per thread. Imported by each thread: starts nothing at import.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { readFileSync, readlinkSync } from "node:fs"
import { threadId } from "node:worker_threads"
import * as Worker from "../../src/Worker.ts"

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
