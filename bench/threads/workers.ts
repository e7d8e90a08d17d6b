/**
 * Workers for the thread-pool spike: a CPU-bound hash, a busy loop that never
 * yields, and two that crash their thread. Loaded by URL in each thread.
 */
import { Effect, Schema } from "effect"
import { createHash } from "node:crypto"
import * as Worker from "../../src/Worker.ts"

/** `rounds` chained SHA-256 digests of `seed`; about 1 µs a round. */
export const hashRounds = (seed: string, rounds: number): string => {
  let digest = Buffer.from(seed)
  for (let i = 0; i < rounds; i++) digest = createHash("sha256").update(digest).digest()
  return digest.toString("hex")
}

/** Hashes, and records the wall and CPU milliseconds of its own thread that the hashing took. */
export const Hash = Worker.make("SpikeHash", {
  args: Schema.Struct({ seed: Schema.String, rounds: Schema.Number }),
  result: Schema.Struct({ wallMs: Schema.Number, cpuMs: Schema.Number }),
  perform: (job) =>
    Effect.sync(() => {
      const wall = performance.now()
      const cpu = process.threadCpuUsage()
      hashRounds(job.args.seed, job.args.rounds)
      const used = process.threadCpuUsage(cpu)
      return { wallMs: performance.now() - wall, cpuMs: (used.user + used.system) / 1000 }
    })
})

/** Spins for `millis` without ever yielding to the event loop. */
export const Busy = Worker.make("SpikeBusy", {
  args: Schema.Struct({ millis: Schema.Number }),
  perform: (job) =>
    Effect.sync(() => {
      const end = Date.now() + job.args.millis
      while (Date.now() < end) { /* spin */ }
    })
})

/** Throws outside any fiber: an uncaught exception in the thread. */
export const Throws = Worker.make("SpikeThrows", {
  args: Schema.Struct({ crash: Schema.Boolean }),
  perform: (job) =>
    !job.args.crash ? Effect.void : Effect.callback<void>(() => {
      setTimeout(() => {
        throw new Error("boom outside the fiber")
      }, 1)
    })
})

/** Allocates until the thread's heap limit is reached. */
export const Hog = Worker.make("SpikeHog", {
  args: Schema.Struct({ crash: Schema.Boolean }),
  perform: (job) =>
    Effect.sync(() => {
      if (!job.args.crash) return
      const hoard: Array<Array<number>> = []
      for (;;) hoard.push(new Array(1e6).fill(1))
    })
})

/** Fails, snoozes, cancels or discards, to check what crosses back. */
export const Decides = Worker.make("SpikeDecides", {
  args: Schema.Struct({ what: Schema.Literals(["fail", "snooze", "cancel", "discard", "die"]) }),
  perform: (job) => {
    switch (job.args.what) {
      case "fail":
        return Effect.fail({ _tag: "MailError", message: "smtp said no" })
      case "snooze":
        return Worker.snooze("5 seconds")
      case "cancel":
        return Worker.cancel("not needed")
      case "discard":
        return Worker.discard("bad input")
      case "die":
        return Effect.die(new Error("a defect in the thread"))
    }
  }
})

/** Logs the span it runs under, to see the trace continue in the thread. */
export const Traced = Worker.make("SpikeTraced", {
  args: Schema.Struct({}),
  perform: () =>
    Effect.flatMap(Effect.currentSpan, (span) =>
      Effect.log(`in thread: span ${span.name} trace ${span.traceId} parent ${
        span.parent?._tag === "Some" ? span.parent.value.spanId : "none"
      }`)).pipe(Effect.withSpan("hash.inner"))
})

/** Says which thread (or process) ran it. */
export const WhoAmI = Worker.make("SpikeWhoAmI", {
  args: Schema.Struct({}),
  result: Schema.String,
  perform: () =>
    Effect.sync(() => `${process.pid}/${(process.getBuiltinModule("node:worker_threads")).threadId}`)
})

/** Succeeds, leaving a timer that throws in its thread `later` ms afterwards: a crash while idle. */
export const Leaves = Worker.make("SpikeLeaves", {
  args: Schema.Struct({ later: Schema.Number }),
  perform: (job) =>
    Effect.sync(() => {
      if (job.args.later >= 0) {
        setTimeout(() => {
          throw new Error("a stray timer")
        }, job.args.later)
      }
    })
})
