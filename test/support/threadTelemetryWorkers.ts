/**
 * Thread workers that log and make spans, for test/threadTelemetry.test.ts.
 * Each thread imports this module by URL, so it must not start anything at
 * import.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Worker from "../../src/Worker.ts"

export const queue = "thread_telemetry"

export class Oops extends Schema.TaggedError<Oops>()("Oops", { message: Schema.String }) {}

/**
 * Logs at four levels with an annotation and a log span of its own, and
 * makes spans: `thread.outer` (attributes, one set late, a log inside) with
 * `thread.inner` under it, and `thread.failing`, which fails.
 */
export const Chatty = Worker.make("ThreadChatty", {
  args: Schema.Struct({}),
  queue,
  maxAttempts: 1,
  threads: { module: import.meta.url },
  perform: () =>
    Effect.gen(function*() {
      yield* Effect.logInfo("hello from the thread", { n: 1 })
      // Structured clone refuses functions: they cross as their names.
      yield* Effect.logInfo("odd values", { fn: function named() {}, at: new Date(0), error: new Oops({ message: "kept" }) })
      yield* Effect.logDebug("a debug line")
      yield* Effect.logTrace("a trace line")
      yield* Effect.gen(function*() {
        yield* Effect.annotateCurrentSpan("thread.late", true)
        yield* Effect.logWarning("inside the outer span")
        yield* Effect.withSpan(Effect.void, "thread.inner", { attributes: { depth: 2 } })
      }).pipe(Effect.withSpan("thread.outer", { attributes: { "thread.attr": "a" }, kind: "client" }))
      yield* Effect.fail(new Oops({ message: "the span fails" })).pipe(
        Effect.withSpan("thread.failing"),
        Effect.catch(() => Effect.void)
      )
    }).pipe(Effect.annotateLogs({ own: "mine" }), Effect.withLogSpan("work"))
})

/** Logs inside a span, then spins without yielding until its timeout terminates the thread. */
export const LogThenSpin = Worker.make("ThreadLogThenSpin", {
  args: Schema.Struct({ millis: Schema.Int }),
  queue,
  maxAttempts: 2,
  threads: { module: import.meta.url },
  perform: (job) =>
    Effect.logInfo("about to spin").pipe(
      Effect.andThen(Effect.sync(() => {
        const end = Date.now() + job.args.millis
        while (Date.now() < end) { /* spin */ }
      })),
      Effect.withSpan("thread.spinning")
    )
})
