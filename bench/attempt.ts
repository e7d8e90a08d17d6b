/**
 * `npm run bench:attempt`: what one attempt costs the node, without a
 * database. A drain's rate on a shared machine moves 15-25% between runs, far
 * more than a change to the per-job path does; this loop measures that path
 * alone, to within a few percent, so such a change can be judged.
 *
 * Each round runs BENCH_JOBS (default 100,000) no-op jobs, each in its own
 * fiber forked as the executor forks it, two ways, in turn:
 * - attempt: `runAttempt`, as a node runs every job (decoding the args, the
 *   `oban.perform` span, metrics, log annotations, the outcome row);
 * - untraced: the same, on a node whose application switched tracing off
 *   (`References.TracerEnabled` false), where the span is a no-op;
 * - floor: the worker's `perform` alone, then a completed row.
 * The difference is the bookkeeping around a job. The first BENCH_WARMUP
 * rounds (default 2) warm the JIT up and are left out of the medians.
 */
import { Context, Effect, Exit, References } from "effect"
import { claimedJob } from "../src/internal/jobRow.ts"
import { completed } from "../src/internal/outcome.ts"
import { makeRegistry, runAttempt, type RunnableWorker } from "../src/internal/perform.ts"
import type { AckRow } from "../src/internal/sql/acks.ts"
import type { Job } from "../src/Job.ts"
import { envInt, fixed, median, textTable } from "./scale/report.ts"
import { makeNoop } from "./workers.ts"

const jobsPerRound = envInt("BENCH_JOBS", 100_000)
const rounds = envInt("BENCH_ROUNDS", 7)
const warmup = Number(process.env["BENCH_WARMUP"] ?? 2)

let ran = 0
const worker = makeNoop(() => Effect.sync(() => void ran++))
const registry = makeRegistry("bench", [worker as unknown as RunnableWorker<never>])

/** Jobs as a claim returns them: args and meta as JSON text, meta with a traceparent (jobs inserted in a span). */
const claimedJobs = (round: number): ReadonlyArray<Job> => {
  const now = new Date()
  const meta = JSON.stringify({ traceparent: "00-4d3007489cca4b41dddefe18327140e6-28bca78e32720451-01" })
  return Array.from({ length: jobsPerRound }, (_, index) =>
    claimedJob({
      id: round * jobsPerRound + index + 1,
      worker: worker.name,
      args: `{"i":${index}}`,
      meta,
      tags: null,
      errors: null,
      attempt: 1,
      max_attempts: 20,
      priority: 0,
      inserted_at: now,
      scheduled_at: now,
      attempted_at: now,
      completed_at: null,
      discarded_at: null,
      cancelled_at: null,
      cancel_requested_at: null
    }, "default", ["bench", "producer", "claim"], 0))
}

type Variant = "attempt" | "untraced" | "floor"
const variants: ReadonlyArray<Variant> = ["attempt", "untraced", "floor"]

const attemptOf = (variant: Variant, job: Job): Effect.Effect<AckRow> =>
  variant !== "floor"
    ? runAttempt(registry, job, () => undefined)
    : Effect.as(Effect.interruptible(worker.perform(job as Job<{ readonly i: number }>)), completed(job))

const program = Effect.gen(function*() {
  // As the executor does: job fibers fork from a flattened copy of the node's context, uninterruptible.
  const context = yield* Effect.context<never>()
  const flat = Context.makeUnsafe<never>(new Map(context.mapUnsafe))
  const forks: Record<Variant, ReturnType<typeof Effect.runForkWith<never>>> = {
    attempt: Effect.runForkWith(flat),
    // A node whose application switched tracing off (`References.TracerEnabled`): spans are no-ops.
    untraced: Effect.runForkWith(Context.add(flat, References.TracerEnabled, false)),
    floor: Effect.runForkWith(flat)
  }
  const times: Record<Variant, Array<number>> = { attempt: [], untraced: [], floor: [] }
  for (let round = 0; round < warmup + rounds; round++) {
    for (const variant of variants) {
      const fork = forks[variant]
      const jobs = claimedJobs(round)
      let written = 0
      const before = ran
      const start = performance.now()
      for (const job of jobs) {
        fork(
          Effect.matchCauseEffect(attemptOf(variant, job), {
            onFailure: (cause) => Effect.die(cause),
            onSuccess: (row) => Effect.sync(() => void (row.state === "completed" && written++))
          }),
          { uninterruptible: true }
        )
      }
      const elapsed = performance.now() - start
      if (written !== jobs.length || ran - before !== jobs.length) {
        return yield* Effect.die(new Error(`${variant}: ${ran - before} ran and ${written} completed of ${jobs.length}`))
      }
      if (round >= warmup) times[variant].push((elapsed * 1000) / jobs.length)
    }
  }
  const row = (variant: Variant) => [variant, fixed(median(times[variant]), 2), fixed(Math.min(...times[variant]), 2)]
  console.log(`Node ${process.version}; ${jobsPerRound.toLocaleString("en-US")} no-op jobs per round, ${rounds} rounds after ${warmup} warm-up round(s)\n`)
  console.log(textTable(["per job (µs)", "median", "min"], variants.map(row)))
  console.log(`\nbookkeeping per attempt (median attempt - median floor): ${fixed(median(times.attempt) - median(times.floor), 2)} µs`)
  console.log(`of which tracing (median attempt - median untraced): ${fixed(median(times.attempt) - median(times.untraced), 2)} µs`)
})

const exit = await Effect.runPromiseExit(program)
if (Exit.isFailure(exit)) {
  console.error(exit.cause)
  process.exitCode = 1
}
