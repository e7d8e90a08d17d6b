/**
 * `untilLanded`, the loop the give-backs and releases of claimed jobs share:
 * tried again after each failure it retries, paused between tries, told of
 * each retry, ended by a failure it does not retry.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber } from "effect"
import { SqlError, UnknownError } from "effect/sql/SqlError"
import { isRetryableFailure, untilLanded } from "../src/internal/untilLanded.ts"

type Refused = { readonly isRetryable: boolean } | SqlError

/** A statement that fails with `failures` in turn, then succeeds with the number of tries. */
const failingWith = (failures: ReadonlyArray<Refused | "defect">) => {
  let tries = 0
  const statement = Effect.suspend((): Effect.Effect<number, Refused> => {
    const failure = failures[tries++]
    if (failure === undefined) return Effect.succeed(tries)
    return failure === "defect" ? Effect.die(new Error("boom")) : Effect.fail(failure)
  })
  return { statement, tries: () => tries }
}

describe("untilLanded", () => {
  it.effect("retries every failure by default, defects too, pausing after each and telling each", () =>
    Effect.gen(function*() {
      const { statement } = failingWith([{ isRetryable: false }, "defect", { isRetryable: true }])
      const order: Array<string> = []
      const tries = yield* untilLanded(statement, {
        pause: (failures) => Effect.sync(() => order.push(`pause ${failures}`)),
        onRetry: (failures) => Effect.sync(() => order.push(`told ${failures}`))
      })
      assert.strictEqual(tries, 4)
      // Told before the pause: a caller counting some failures only (claimReturns.ts) paces the pause by them.
      assert.deepStrictEqual(order, ["told 1", "pause 1", "told 2", "pause 2", "told 3", "pause 3"])
    }))

  it.effect("with isRetryableFailure, ends with the first failure that is not retryable, or a defect", () =>
    Effect.gen(function*() {
      const refused = failingWith([{ isRetryable: true }, { isRetryable: false }, { isRetryable: true }])
      const ended = yield* Effect.exit(untilLanded(refused.statement, { pause: () => Effect.void, retryIf: isRetryableFailure }))
      assert.isTrue(Exit.isFailure(ended))
      const error = Exit.findErrorOption(ended)
      assert.isTrue(error._tag === "Some" && !error.value.isRetryable)
      assert.strictEqual(refused.tries(), 2)
      const died = failingWith([{ isRetryable: true }, "defect"])
      const exit = yield* Effect.exit(untilLanded(died.statement, { pause: () => Effect.void, retryIf: isRetryableFailure }))
      assert.isTrue(Exit.hasDies(exit))
      assert.strictEqual(died.tries(), 2)
    }))

  it.effect("with isRetryableFailure, retries a session the server ended or refused (a restart), a refusal while connecting or a server taking no writes, not other server errors", () =>
    Effect.gen(function*() {
      // As the driver reports them: SQLSTATEs outside class 08 are all an `UnknownError`.
      const fromServer = (code: string, operation = "query") =>
        new SqlError({
          reason: new UnknownError({
            cause: Object.assign(new Error(`server said ${code}`), { code }),
            message: "PgConnection: Query failed",
            operation
          })
        })
      const restart = failingWith([fromServer("57P01"), fromServer("57P03"), fromServer("53300"), fromServer("25006"), fromServer("3D000", "connect")])
      const tries = yield* untilLanded(restart.statement, { pause: () => Effect.void, retryIf: isRetryableFailure })
      assert.strictEqual(tries, 6)
      // Not a session's end: a bad value, or a resource one large statement can exhaust by itself.
      for (const code of ["22P02", "53400", "53200"]) {
        const refused = failingWith([fromServer("57P01"), fromServer(code)])
        const ended = yield* Effect.exit(untilLanded(refused.statement, { pause: () => Effect.void, retryIf: isRetryableFailure }))
        assert.isTrue(Exit.isFailure(ended), code)
        assert.strictEqual(refused.tries(), 2, code)
      }
    }))

  it.effect("ends when its fiber is interrupted, in a statement or in a pause", () =>
    Effect.gen(function*() {
      for (const where of ["statement", "pause"] as const) {
        const waiting = yield* Deferred.make<void>()
        let tries = 0
        const statement = Effect.suspend(() => {
          tries++
          return where === "statement" ? Effect.andThen(Deferred.succeed(waiting, undefined), Effect.never) : Effect.fail({ isRetryable: true })
        })
        const fiber = yield* Effect.forkChild(untilLanded(statement, {
          pause: () => Effect.andThen(Deferred.succeed(waiting, undefined), Effect.never)
        }))
        yield* Deferred.await(waiting)
        yield* Fiber.interrupt(fiber)
        const exit = yield* Fiber.await(fiber)
        assert.isTrue(Exit.hasInterrupts(exit), where)
        assert.strictEqual(tries, 1, where)
      }
    }))
})
