/**
 * What a retrying loop logs of failures in a row, through the maintenance
 * services' loop (`periodic`) on TestClock: the first warning carries the
 * whole cause, repeats are one line, the first success after them says so,
 * and the next failure starts a new run with its cause.
 */
import { assert, describe, it } from "@effect/vitest"
import * as PgClient from "@effect/sql-pg/PgClient"
import { Data, Duration, Effect, Fiber, Logger, Redacted, References } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { TestClock } from "effect/testing"
import { logged } from "../src/internal/failureStreak.ts"
import { periodic } from "../src/internal/periodic.ts"

class Boom extends Data.TaggedError("Boom")<{ readonly message: string }> {}

describe("a maintenance loop's failures in a row", () => {
  it.effect("a long run logs failures 1 to 3, then at doubling counts: 4, 8, 16", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const capture = Logger.make(({ message }) => {
        lines.push(String(Array.isArray(message) ? message[0] : message))
      })
      const loop = yield* Effect.forkChild(
        periodic({ name: "Sweeper", interval: Duration.seconds(1), run: Effect.fail(new Boom({ message: "down" })) }).pipe(
          Effect.provideService(Logger.CurrentLoggers, new Set([capture])),
          Effect.provideService(References.MinimumLogLevel, "All")
        )
      )
      for (let second = 0; second < 20; second++) yield* TestClock.adjust("1 second")
      yield* Fiber.interrupt(loop)
      assert.deepStrictEqual(lines, [
        "Sweeper failed; will try again: down",
        "Sweeper failed; will try again: down",
        "Sweeper failed; will try again: down",
        "Sweeper failed; will try again (4 in a row; the next logged at 8): down",
        "Sweeper failed; will try again (8 in a row; the next logged at 16): down",
        "Sweeper failed; will try again (16 in a row; the next logged at 32): down"
      ])
      assert.deepStrictEqual([511, 512, 513, 1024, 1536].map(logged), [false, true, false, true, true])
    }))

  it.live("a connection the server refuses is one line from the first warning: its stack is the driver's, three times over", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const capture = Logger.make(({ message }) => {
        lines.push(Array.isArray(message) ? message.join("\n") : String(message))
      })
      // A port nothing listens on.
      const refused = Effect.flatMap(SqlClient, (sql) => sql`SELECT 1`).pipe(
        Effect.provide(PgClient.layer({ url: Redacted.make("postgres://postgres@127.0.0.1:9/none") }))
      )
      const loop = yield* Effect.forkChild(
        periodic({ name: "Sweeper", interval: Duration.millis(10), run: refused }).pipe(
          Effect.provideService(Logger.CurrentLoggers, new Set([capture])),
          Effect.provideService(References.MinimumLogLevel, "All")
        )
      )
      yield* Effect.sleep("300 millis").pipe(Effect.repeat({ until: () => lines.length > 0, times: 50 }))
      yield* Fiber.interrupt(loop)
      assert.match(lines[0]!, /^Sweeper failed; will try again: PgConnection: Failed to connect \(connect ECONNREFUSED 127\.0\.0\.1:9\)$/)
    }))

  it.effect("warn with the cause once, then one line each, and say when runs get through again", () =>
    Effect.gen(function*() {
      const lines: Array<{ readonly level: string; readonly text: string }> = []
      const capture = Logger.make(({ logLevel, message }) => {
        lines.push({ level: logLevel, text: Array.isArray(message) ? message.join("\n") : String(message) })
      })
      // Runs 1-3 fail, 4-5 succeed, 6 fails, then every run succeeds.
      let runs = 0
      const run = Effect.suspend(() => {
        runs++
        return runs <= 3 || runs === 6 ? Effect.fail(new Boom({ message: `run ${runs} broke` })) : Effect.void
      })
      const loop = yield* Effect.forkChild(
        periodic({ name: "Sweeper", interval: Duration.seconds(1), run }).pipe(
          Effect.provideService(Logger.CurrentLoggers, new Set([capture])),
          Effect.provideService(References.MinimumLogLevel, "All")
        )
      )
      for (let second = 0; second < 7; second++) yield* TestClock.adjust("1 second")
      yield* Fiber.interrupt(loop)

      assert.strictEqual(runs, 7)
      const said = lines.map((line) => [line.level, line.text.split("\n")[0]])
      assert.deepStrictEqual(said, [
        ["Warn", "Sweeper failed; will try again: run 1 broke"],
        ["Warn", "Sweeper failed; will try again: run 2 broke"],
        ["Warn", "Sweeper failed; will try again: run 3 broke"],
        ["Info", "Sweeper runs get through again, after 3 failed"],
        ["Warn", "Sweeper failed; will try again: run 6 broke"],
        ["Info", "Sweeper runs get through again, after 1 failed"]
      ])
      // The first of each run of failures carries the pretty cause (the error's tag and stack); repeats do not.
      const warnings = lines.filter((line) => line.level === "Warn")
      for (const index of [0, 3]) assert.include(warnings[index]!.text, "Boom", warnings[index]!.text)
      for (const index of [1, 2]) assert.notInclude(warnings[index]!.text, "\n", warnings[index]!.text)
    }))
})
