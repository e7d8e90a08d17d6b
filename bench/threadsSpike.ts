/**
 * Spike for worker threads (issue #14): runs a CPU-bound worker on the main
 * thread and on pools of 1 and 2 threads, then a busy loop with a 100 ms
 * timeout, a crash and an out-of-memory thread, and prints timings.
 * No database: jobs are built in memory. `node bench/threadsSpike.ts [jobs] [ms]`
 */
import { Cause, Effect, Exit, Pool, Schema } from "effect"
import * as os from "node:os"
import type { Job } from "../src/Job.ts"
import * as ThreadPool from "../src/internal/threads/pool.ts"
import { Busy, Decides, Hash, hashRounds, Hog, Throws, WhoAmI } from "./threads/workers.ts"

const jobs = Number(process.argv[2] ?? 20)
const targetMs = Number(process.argv[3] ?? 50)
const module = new URL("./threads/workers.ts", import.meta.url)

/** A pool of its own for one worker: jobs are given with decoded args, which cross as their JSON encoding. */
const threaded = <A>(
  worker: { readonly name: string; readonly argsJson: Schema.Codec<A, Schema.Json> },
  options: ThreadPool.ThreadPoolOptions
) =>
  Effect.map(ThreadPool.make(options), (pool) => ({
    pool: pool.pool,
    perform: (job: Job<A>) => pool.perform({ name: worker.name, module }, { ...job, args: Schema.encodeSync(worker.argsJson)(job.args) })
  }))

let nextId = 1
const jobOf = <A>(worker: string, args: A): Job<A> => ({
  id: nextId++, state: "executing", queue: "spike", worker, args, meta: { traceparent: "none" }, tags: [], errors: [],
  attempt: 1, maxAttempts: 20, priority: 0, insertedAt: new Date(), scheduledAt: new Date(), attemptedAt: new Date(),
  completedAt: null, discardedAt: null, cancelledAt: null, attemptedBy: ["spike", "0", "claim"], cancelRequestedAt: null
})

const now = () => performance.now()
const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const start = now()
    const exit = yield* Effect.exit(effect)
    return { exit, ms: now() - start }
  })

/** Wall time, CPU time of the whole process (all threads) per wall time, and the main event loop's delay p99. */
const measured = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    // A 5 ms timer on the main thread: how late its ticks come is what a heartbeat or a claim would wait.
    let last = now()
    let worst = 0
    const timer = setInterval(() => {
      const at = now()
      worst = Math.max(worst, at - last - 5)
      last = at
    }, 5)
    const cpu = process.cpuUsage()
    const result = yield* timed(effect)
    const used = process.cpuUsage(cpu)
    clearInterval(timer)
    worst = Math.max(worst, now() - last - 5)
    const cores = (used.user + used.system) / 1000 / result.ms
    return { ...result, text: `${result.ms.toFixed(0)} ms, ${cores.toFixed(2)} cores busy, a 5 ms timer up to ${worst.toFixed(0)} ms late` }
  })
/** The mean wall and CPU time the hashing itself took, as each job measured it in its own thread. */
const inJob = (exit: Exit.Exit<ReadonlyArray<unknown>, unknown>) => {
  if (Exit.isFailure(exit)) return "failed"
  const times = exit.value as ReadonlyArray<{ readonly wallMs: number; readonly cpuMs: number }>
  const mean = (f: (t: { readonly wallMs: number; readonly cpuMs: number }) => number) =>
    (times.reduce((sum, t) => sum + f(t), 0) / times.length).toFixed(1)
  return `each job hashed for ${mean((t) => t.wallMs)} ms wall / ${mean((t) => t.cpuMs)} ms CPU of its thread`
}

const summary = (exit: Exit.Exit<unknown, unknown>) =>
  Exit.isSuccess(exit) ? "success" : Cause.pretty(exit.cause).split("\n").slice(0, 2).join(" | ")

const program = Effect.gen(function*() {
  // Calibrate: rounds for about targetMs on this machine.
  const probe = 5_000
  // The median of 7 probes: on a shared machine the fastest is luck and the slowest a neighbour's burst.
  const probes: Array<number> = []
  for (let i = 0; i < 7; i++) {
    const t0 = now()
    hashRounds("calibrate", probe)
    probes.push(now() - t0)
  }
  const rounds = Math.round(probe * targetMs / probes.sort((a, b) => a - b)[3]!)
  let t = now()
  const args = { seed: "spike", rounds }
  hashRounds("check", rounds)
  console.log(`one job: ${rounds} sha256 rounds, ${(now() - t).toFixed(1)} ms on the main thread`)

  // Main thread, concurrency 2 (as an executor with a local limit of 2 would run them).
  const main = yield* measured(Effect.forEach(Array.from({ length: jobs }, () => jobOf("SpikeHash", args)), Hash.perform, { concurrency: 2 }))
  console.log(`main thread: ${jobs} jobs in ${main.text}; ${inJob(main.exit)}`)

  for (const size of [1, 2]) {
    yield* Effect.scoped(Effect.gen(function*() {
      const started = yield* timed(threaded(Hash, { size }))
      if (Exit.isFailure(started.exit)) return yield* Effect.die(Cause.squash(started.exit.cause))
      const pool = started.exit.value
      const first = yield* timed(pool.perform(jobOf("SpikeHash", { seed: "warm", rounds: 1 })))
      // Every thread up and its hashing warmed by the JIT before the timed run.
      yield* Effect.forEach(Array.from({ length: 2 * size }, () => jobOf("SpikeHash", args)), pool.perform, { concurrency: size })
      const run = yield* measured(Effect.forEach(Array.from({ length: jobs }, () => jobOf("SpikeHash", args)), pool.perform, { concurrency: size }))
      console.log(`pool of ${size}: start ${started.ms.toFixed(0)} ms, first tiny job ${first.ms.toFixed(0)} ms, ` +
        `${jobs} jobs in ${run.text}, speed-up ${(main.ms / run.ms).toFixed(2)}x; ${inJob(run.exit)}`)
      const tiny = yield* timed(Effect.forEach(Array.from({ length: 200 }, () => jobOf("SpikeHash", { seed: "x", rounds: 1 })), pool.perform, { concurrency: size }))
      console.log(`pool of ${size}: 200 tiny jobs in ${tiny.ms.toFixed(0)} ms (${(tiny.ms / 200 * size).toFixed(2)} ms per job per thread)`)
    }))
  }

  // A busy loop of 2 s with a timeout of 100 ms, on a pool of 2 that keeps running hash jobs.
  yield* Effect.scoped(Effect.gen(function*() {
    const busy = yield* threaded(Busy, { size: 2 })
    yield* Effect.forEach([1, 2], () => busy.perform(jobOf("SpikeBusy", { millis: 1 })), { concurrency: 2 }) // both threads up
    const stuck = yield* timed(busy.perform(jobOf("SpikeBusy", { millis: 2000 })).pipe(Effect.timeout("100 millis")))
    console.log(`busy loop (2 s) with a 100 ms timeout ended after ${stuck.ms.toFixed(0)} ms: ${summary(stuck.exit)}`)
    const again = yield* timed(Effect.forEach([1, 2, 3, 4], () => busy.perform(jobOf("SpikeBusy", { millis: 50 })), { concurrency: 2 }))
    console.log(`then 4 busy jobs of 50 ms on the same pool: ${again.ms.toFixed(0)} ms (${summary(again.exit)})`)
    const stats = yield* Pool.stats(busy.pool)
    console.log(`pool stats after: ${JSON.stringify(stats)}`)
  }))

  // One pool for two workers: the thread imports the module once and finds each worker by name.
  yield* Effect.scoped(Effect.gen(function*() {
    const pool = yield* ThreadPool.make({ size: 2 })
    const onPool = <A>(worker: { readonly name: string; readonly argsJson: Schema.Codec<A, Schema.Json> }, args: A) =>
      pool.perform({ name: worker.name, module }, jobOf(worker.name, Schema.encodeSync(worker.argsJson)(args)))
    const mixed = yield* timed(Effect.all([onPool(Hash, args), onPool(Busy, { millis: 20 }), onPool(Hash, args), onPool(Busy, { millis: 20 })], { concurrency: 2 }))
    console.log(`one pool of 2 for Hash and Busy: 4 jobs in ${mixed.ms.toFixed(0)} ms (${summary(mixed.exit)})`)
    const missing = yield* Effect.exit(pool.perform({ name: "Nope", module }, jobOf("Nope", {})))
    const unloadable = yield* Effect.exit(pool.perform({ name: "Nope", module: new URL("./threads/nope.ts", import.meta.url) }, jobOf("Nope", {})))
    const undecodable = yield* Effect.exit(pool.perform({ name: Hash.name, module }, jobOf(Hash.name, { seed: 1 })))
    for (const [what, exit] of [["no such export", missing], ["no such module", unloadable], ["bad args", undecodable]] as const) {
      console.log(`${what}: ${summary(exit).slice(0, 160)}`)
    }
    console.log(`pool stats after: ${JSON.stringify(yield* Pool.stats(pool.pool))}`)
  }))

  // Recycling: a pool of 1 that replaces its thread after 2 attempts.
  yield* Effect.scoped(Effect.gen(function*() {
    const pool = yield* threaded(WhoAmI, { size: 1, recycleAfter: 2 })
    const t0 = now()
    const who = yield* Effect.forEach([1, 2, 3, 4, 5, 6], () => pool.perform(jobOf("SpikeWhoAmI", {})))
    console.log(`recycleAfter 2: 6 jobs ran on ${JSON.stringify(who)} in ${(now() - t0).toFixed(0)} ms`)
  }))

  // What crosses back: typed failure, snooze, cancel, discard, defect.
  yield* Effect.scoped(Effect.gen(function*() {
    const pool = yield* threaded(Decides, { size: 1 })
    for (const what of ["fail", "snooze", "cancel", "discard", "die"] as const) {
      const exit = yield* Effect.exit(pool.perform(jobOf("SpikeDecides", { what })))
      console.log(`decides ${what}: ${Exit.isSuccess(exit) ? "success" : JSON.stringify(Cause.squash(exit.cause))} ${Exit.isFailure(exit) ? Cause.squash(exit.cause)?.constructor?.name : ""}`)
    }
  }))

  // Crashes: an uncaught exception, and out of memory under resourceLimits.
  for (const [worker, limits] of [[Throws, undefined], [Hog, { maxOldGenerationSizeMb: 32 }]] as const) {
    yield* Effect.scoped(Effect.gen(function*() {
      const pool = yield* threaded(worker, { size: 1, resourceLimits: limits })
      yield* pool.perform(jobOf(worker.name, { crash: false }))
      const crash = yield* timed(pool.perform(jobOf(worker.name, { crash: true })).pipe(Effect.timeout("10 seconds")))
      console.log(`${worker.name}: attempt ended after ${crash.ms.toFixed(0)} ms: ${summary(crash.exit)}`)
      const after = yield* timed(pool.perform(jobOf(worker.name, { crash: false })))
      console.log(`${worker.name}: the next job ran after ${after.ms.toFixed(0)} ms (a new thread): ${summary(after.exit)}`)
    }))
  }

  // The same on child processes: start, a busy loop's timeout, a crash.
  yield* Effect.scoped(Effect.gen(function*() {
    const hash = yield* threaded(Hash, { size: 2, isolation: "process" })
    const first = yield* timed(Effect.forEach([1, 2], () => hash.perform(jobOf("SpikeHash", args)), { concurrency: 2 }))
    const run = yield* measured(Effect.forEach(Array.from({ length: jobs }, () => jobOf("SpikeHash", args)), hash.perform, { concurrency: 2 }))
    console.log(`processes: 2 up in ${first.ms.toFixed(0)} ms, ${jobs} jobs in ${run.text}; ${inJob(run.exit)}`)
    const busy = yield* threaded(Busy, { size: 1, isolation: "process" })
    yield* busy.perform(jobOf("SpikeBusy", { millis: 1 }))
    const stuck = yield* timed(busy.perform(jobOf("SpikeBusy", { millis: 2000 })).pipe(Effect.timeout("100 millis")))
    const after = yield* timed(busy.perform(jobOf("SpikeBusy", { millis: 1 })))
    console.log(`processes: a 100 ms timeout ended a busy loop after ${stuck.ms.toFixed(0)} ms; the next job ran after ${after.ms.toFixed(0)} ms`)
    const throws = yield* threaded(Throws, { size: 1, isolation: "process" })
    yield* throws.perform(jobOf("SpikeThrows", { crash: false }))
    const crash = yield* timed(throws.perform(jobOf("SpikeThrows", { crash: true })))
    console.log(`processes: a crash ended the attempt after ${crash.ms.toFixed(0)} ms: ${summary(crash.exit)}`)
  }))
})

const loadavg = () => os.loadavg().map((n: number) => n.toFixed(2)).join(" ")
console.log(`load average before: ${loadavg()}`)
const start = now()
await Effect.runPromise(program)
console.log(`total ${(now() - start).toFixed(0)} ms; load average after: ${loadavg()}`)
