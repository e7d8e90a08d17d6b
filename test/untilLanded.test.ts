/**
 * `untilLanded`, the loop the give-backs and releases of claimed jobs share:
 * tried again after each failure it retries, paused between tries, told of
 * each retry, ended by a failure it does not retry.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { isRetryableFailure, untilLanded } from "../src/internal/untilLanded.ts"

interface Refused {
  readonly isRetryable: boolean
}

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
      const paused: Array<number> = []
      const told: Array<number> = []
      const tries = yield* untilLanded(statement, {
        pause: (failures) => Effect.sync(() => paused.push(failures)),
        onRetry: (failures) => Effect.sync(() => told.push(failures))
      })
      assert.strictEqual(tries, 4)
      assert.deepStrictEqual(paused, [1, 2, 3])
      assert.deepStrictEqual(told, [1, 2, 3])
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
})
