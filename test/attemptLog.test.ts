/**
 * A node logs each attempt that did not complete: a warning for a failure
 * (with the retry it gets, or that none is left) and for args that do not
 * decode, an info line for a worker's own discard, each annotated with the
 * job. Completed jobs log nothing. Long messages are cut to their first line.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Exit, Layer, Logger, References, Schedule, Schema, Scope } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import { loggedMessageLength, shortMessage } from "../src/internal/attemptLog.ts"
import { clean } from "../src/internal/errorText.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { waitFor } from "./support/node.ts"

const prefix = uniquePrefix("attempt_log")

const Flaky = Worker.make("LogFlaky", {
  args: Schema.Struct({}),
  maxAttempts: 3,
  backoff: Schedule.spaced("2 minutes"),
  perform: () => Effect.fail(new Error("the mail server said no\nretry later"))
})
const Doomed = Worker.make("LogDoomed", { args: Schema.Struct({}), maxAttempts: 1, perform: () => Effect.fail(new Error("x".repeat(2_000))) })
class Gone extends Schema.TaggedError<Gone>()("Gone", {}) {}
const Refuses = Worker.make("LogRefuses", {
  args: Schema.Struct({}),
  maxAttempts: 5,
  perform: () => Effect.fail(new Gone()),
  retryable: () => false
})
const Quits = Worker.make("LogQuits", { args: Schema.Struct({}), perform: () => Worker.discard("the account is gone") })
const Fine = Worker.make("LogFine", { args: Schema.Struct({}), perform: () => Effect.void })
const Typed = Worker.make("LogTyped", { args: Schema.Struct({ n: Schema.Number }), perform: () => Effect.void })

interface Line {
  readonly level: string
  readonly text: string
  readonly annotations: Readonly<Record<string, unknown>>
}

/** Runs a node with every worker above, with a logger that keeps each line; returns the lines and a stop. */
const capturingNode = Effect.gen(function*() {
  const lines: Array<Line> = []
  const capture = Logger.make(({ fiber, logLevel, message }) => {
    lines.push({
      level: logLevel,
      text: Array.isArray(message) ? message.join(" ") : String(message),
      annotations: fiber.getRef(References.CurrentLogAnnotations)
    })
  })
  const scope = yield* Scope.fork(yield* Scope.Scope)
  yield* Layer.buildWithScope(
    Layer.fresh(Oban.layer({
      prefix,
      node: "log-node",
      queues: { default: 5 },
      workers: [Flaky, Doomed, Refuses, Quits, Fine, Typed],
      pruner: false
    })),
    scope
  ).pipe(
    Effect.provideService(Logger.CurrentLoggers, new Set([capture])),
    Effect.provideService(References.MinimumLogLevel, "All")
  )
  return { lines, stop: Scope.close(scope, Exit.void) }
})

describe("attempt log lines", () => {
  it("a message is cut to its first line and at most the length a line shows", () => {
    assert.strictEqual(shortMessage("boom"), "boom")
    assert.strictEqual(shortMessage("boom\n  at x"), "boom (the whole text is in the job's errors)")
    const long = shortMessage("y".repeat(loggedMessageLength + 10))
    assert.strictEqual(long, `${"y".repeat(loggedMessageLength)}... (the whole text is in the job's errors)`)
    // A message over what errors keep, as stored (cut, with its note): the line does not claim the whole text.
    const stored = clean("z".repeat(2 * 1024 * 1024))
    assert.strictEqual(shortMessage(stored), `${"z".repeat(loggedMessageLength)}... (the job's errors keep its first 64 KiB)`)
    assert.strictEqual(shortMessage(clean("short")), "short")
    // A short message that itself ends with such a note was not cut: its line says so.
    assert.strictEqual(
      shortMessage("quoted\n... [truncated: 12 more bytes]"),
      "quoted (the whole text is in the job's errors)"
    )
    // Multi-byte text cut at a sequence boundary still counts as cut.
    assert.strictEqual(shortMessage(clean("é".repeat(1024 * 1024))).endsWith("(the job's errors keep its first 64 KiB)"), true)
  })

  layer(testLayer(prefix), { excludeTestServices: true })((it) => {
    it.effect("a node logs failed, discarded and undecodable attempts, annotated with the job, and nothing for completions", () =>
      Effect.gen(function*() {
        const [flaky, doomed, quits, fine, refuses] = yield* Oban.insertAll([
          Flaky.job({}),
          Doomed.job({}),
          Quits.job({}),
          Fine.job({}),
          Refuses.job({})
        ])
        // Args the worker's schema refuses (written by another program, or an older version of the worker).
        const sql = yield* SqlClient
        const [undecodable] = yield* sql<{ id: number }>`
          INSERT INTO ${sql(prefix)}.oban_jobs (state, queue, worker, args)
          VALUES ('available', 'default', 'LogTyped', '{"n": "one"}') RETURNING id::int AS id`
        const node = yield* capturingNode
        const ids = [flaky!.id, doomed!.id, quits!.id, fine!.id, refuses!.id, undecodable!.id]
        yield* waitFor(
          "every attempt ended",
          Effect.map(
            sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all
              WHERE id IN ${sql.in(ids)} AND state IN ('retryable', 'discarded', 'completed')`,
            (rows) => rows[0]!.n === ids.length
          )
        )
        yield* node.stop
        const about = (id: number) => node.lines.filter((line) => line.annotations["jobId"] === id)

        const [failed] = about(flaky!.id)
        assert.strictEqual(failed?.level, "Warn")
        assert.strictEqual(
          failed?.text,
          `job ${flaky!.id} (LogFlaky) attempt 1 of 3 failed, will retry in 2m: the mail server said no ` +
            "(the whole text is in the job's errors)"
        )
        assert.deepStrictEqual(
          [failed?.annotations["worker"], failed?.annotations["queue"], failed?.annotations["attempt"], failed?.annotations["outcome"]],
          ["LogFlaky", "default", 1, "failed"]
        )

        const [exhausted] = about(doomed!.id)
        assert.strictEqual(exhausted?.level, "Warn")
        assert.strictEqual(
          exhausted?.text,
          `job ${doomed!.id} (LogDoomed) attempt 1 of 1 failed, no attempts left, discarded: ${
            "x".repeat(loggedMessageLength)
          }... (the whole text is in the job's errors)`
        )

        // Attempts were left, but the worker's retryable said no: not "no attempts left".
        const [refusedRetry] = about(refuses!.id)
        assert.strictEqual(refusedRetry?.level, "Warn")
        assert.match(
          refusedRetry?.text ?? "",
          new RegExp(`^job ${refuses!.id} \\(LogRefuses\\) attempt 1 of 5 failed, not retryable \\(its worker's retryable said no\\), discarded: `)
        )

        const [discarded] = about(quits!.id)
        assert.strictEqual(discarded?.level, "Info")
        assert.strictEqual(discarded?.annotations["outcome"], "discarded")
        assert.strictEqual(discarded?.text, `job ${quits!.id} (LogQuits) attempt 1 of 20 discarded by its worker: the account is gone`)

        const [refused] = about(undecodable!.id)
        assert.strictEqual(refused?.level, "Warn")
        // Not the schema's message, which quotes the args.
        assert.strictEqual(
          refused?.text,
          `job ${undecodable!.id} (LogTyped) attempt 1 of 20 discarded: its args do not decode (the job's errors say why)`
        )

        assert.deepStrictEqual(about(fine!.id), [], "a completed job logs nothing")
      }).pipe(Effect.scoped))
  })
})
