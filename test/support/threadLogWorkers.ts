/**
 * Thread workers that log too much, for test/threadLogLimits.test.ts. Each
 * thread imports this module by URL, so it must not start anything at import.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Worker from "../../src/Worker.ts"

export const queue = "thread_log_limits"

/** Logs one line whose second part is a string of `kilobytes` KiB, with an annotation as large. */
export const LogsLargeLine = Worker.make("LimitsLogsLargeLine", {
  args: Schema.Struct({ kilobytes: Schema.Int }),
  queue,
  maxAttempts: 1,
  threads: { module: import.meta.url },
  perform: (job) =>
    Effect.logInfo("large", "x".repeat(job.args.kilobytes * 1024)).pipe(
      Effect.annotateLogs({ big: "y".repeat(job.args.kilobytes * 1024), small: "kept" }),
      Effect.withSpan("limits.large")
    )
})

/**
 * Logs as fast as it can for `millis` ms, inside a span, and records how
 * many lines it wrote and when it stopped (ms since the epoch): the node
 * must neither keep them all in memory nor lose any without counting it.
 */
export const LogsInLoop = Worker.make("LimitsLogsInLoop", {
  args: Schema.Struct({ millis: Schema.Int }),
  queue,
  maxAttempts: 1,
  result: Schema.Struct({ written: Schema.Int, endedAt: Schema.Number }),
  threads: { module: import.meta.url },
  perform: (job) =>
    Effect.gen(function*() {
      const end = Date.now() + job.args.millis
      let written = 0
      while (Date.now() < end) {
        yield* Effect.logInfo("loop line", written)
        written++
      }
      return { written, endedAt: Date.now() }
    }).pipe(Effect.withSpan("limits.loop"))
})
