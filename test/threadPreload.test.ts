/**
 * The pool's preload budget (see src/internal/threads/preload.ts): a thread
 * whose import of the workers' modules has not ended when the budget runs
 * out takes its attempt anyway, with a warning, and the attempt waits for
 * the rest of the import inside its own timeout. Driven through the pool's
 * loader with a short budget; a node uses 30 s.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as References from "effect/References"
import type { Job } from "../src/Job.ts"
import { load } from "../src/internal/threads/load.ts"
import { SlowToImport } from "./support/slowImportWorker.ts"

/** `SlowToImport` as the executor hands thread workers to the pool. */
const slowWorker = { ...SlowToImport, threads: SlowToImport.threads! }

/** A job of `SlowToImport` as a claim would hand it to the pool. */
const slowJob = (id: number): Job<unknown> => ({
  id,
  state: "executing",
  queue: SlowToImport.queue,
  worker: SlowToImport.name,
  args: { n: id },
  meta: {},
  tags: [],
  errors: [],
  attempt: 1,
  maxAttempts: 1,
  priority: 0,
  insertedAt: new Date(),
  scheduledAt: new Date(),
  attemptedAt: new Date(),
  completedAt: null,
  discardedAt: null,
  cancelledAt: null,
  attemptedBy: null,
  cancelRequestedAt: null
})

/** Runs `effect` with its log lines kept in `lines` (`Level: message`), at every level. */
const capturing = (lines: Array<string>) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  effect.pipe(
    Effect.provideService(
      Logger.CurrentLoggers,
      new Set([Logger.make(({ logLevel, message }) => {
        lines.push(`${logLevel}: ${Array.isArray(message) ? message.join(" ") : String(message)}`)
      })])
    ),
    Effect.provideService(References.MinimumLogLevel, "All")
  )

describe("a thread's preload budget", () => {
  it.live("a thread still importing when the budget ends takes its attempt, which waits for the import in its timeout", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      // SlowToImport's module waits 1 s at its top level in a thread; the budget is 200 ms.
      const threads = yield* load({ size: 1, preloadMillis: 200 }, [SlowToImport]).pipe(capturing(lines))
      const started = Date.now()
      // The first attempt gets the thread once the budget ends, and its 300 ms run out in the import.
      const first = yield* threads.perform(slowWorker, slowJob(1), (call) => Effect.timeout(call, "300 millis")).pipe(
        capturing(lines),
        Effect.flip
      )
      const firstEnded = Date.now() - started
      assert.strictEqual((first as { readonly _tag?: unknown })._tag, "TimeoutError", String(first))
      // Handed out at the budget's end (200 ms), not at once, and timed out 300 ms later, well before the import ended.
      assert.isAtLeast(firstEnded, 450, "the thread was handed out only once the budget ended")
      assert.isBelow(firstEnded, 1_200, "the attempt started before the import ended, at the budget's end")
      const warning = lines.find((line) => line.includes("has not imported"))
      assert.isDefined(warning, lines.join("\n"))
      assert.match(warning!, /^Warn: a worker thread has not imported .*slowImportWorker\.ts after 0\.2 s; it takes jobs now/)
      // Its thread was terminated; the next attempt, on a new thread, waits for that one's import,
      // which it may do without a timeout, and completes.
      yield* threads.perform(slowWorker, slowJob(2), (call) => call).pipe(capturing(lines))
      assert.isAtLeast(Date.now() - started - firstEnded, 900, "the second attempt waited for its thread's import")
      assert.strictEqual(lines.filter((line) => line.includes("has not imported")).length, 2, lines.join("\n"))
    }).pipe(Effect.scoped), { timeout: Duration.toMillis("30 seconds") })
})
