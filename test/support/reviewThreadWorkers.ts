/**
 * Thread workers for test/reviewThreads.test.ts. Each thread imports this
 * module by URL, so it must not start anything at import.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Worker from "../../src/Worker.ts"

export const queue = "review_threads"

/** Logs one line the test's logger throws on, then one it keeps. */
export const LogsBoom = Worker.make("ReviewLogsBoom", {
  args: Schema.Struct({}),
  queue,
  maxAttempts: 1,
  threads: { module: import.meta.url },
  perform: () => Effect.andThen(Effect.logInfo("boom"), Effect.logInfo("after the boom"))
})

/** A span around a busy loop, with no log: its timeout terminates the thread inside the span. */
export const SpanThenSpin = Worker.make("ReviewSpanThenSpin", {
  args: Schema.Struct({ millis: Schema.Int }),
  queue,
  maxAttempts: 1,
  threads: { module: import.meta.url },
  perform: (job) =>
    Effect.sync(() => {
      const end = Date.now() + job.args.millis
      while (Date.now() < end) { /* spin */ }
    }).pipe(Effect.withSpan("review.spinning", { attributes: { given: 1 } }))
})

/** Forks a fiber that outlives the attempt and logs after `millis`. */
export const Lingers = Worker.make("ReviewLingers", {
  args: Schema.Struct({ millis: Schema.Int }),
  queue,
  maxAttempts: 1,
  threads: { module: import.meta.url },
  perform: (job) =>
    Effect.asVoid(Effect.forkDetach(Effect.andThen(Effect.sleep(job.args.millis), Effect.logInfo("late, from a fiber of the earlier job"))))
})

/** Sleeps (yielding) for `millis`. */
export const Sleeps = Worker.make("ReviewSleeps", {
  args: Schema.Struct({ millis: Schema.Int }),
  queue,
  maxAttempts: 1,
  threads: { module: import.meta.url },
  perform: (job) => Effect.sleep(job.args.millis)
})

/** Logs inside a span, then ends its thread with `process.exit`. */
export const LogsThenExits = Worker.make("ReviewLogsThenExits", {
  args: Schema.Struct({}),
  queue,
  maxAttempts: 1,
  threads: { module: import.meta.url },
  perform: () =>
    Effect.logInfo("last words").pipe(
      Effect.andThen(Effect.sync(() => process.exit(3))),
      Effect.withSpan("review.exiting")
    )
})

/** Logs a string of `megabytes` MB. */
export const LogsHuge = Worker.make("ReviewLogsHuge", {
  args: Schema.Struct({ megabytes: Schema.Int }),
  queue,
  maxAttempts: 1,
  threads: { module: import.meta.url },
  perform: (job) => Effect.logInfo("huge", "x".repeat(job.args.megabytes * 1024 * 1024))
})
