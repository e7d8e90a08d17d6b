/**
 * What a failure records of a tagged error without a message: its fields as
 * JSON, bounded (binary data as its size, long strings and the whole cut),
 * and nothing when they cannot be written; a thread worker's failure crosses
 * with the same text.
 */
import { assert, describe, it } from "@effect/vitest"
import { Data, Redacted } from "effect"
import { errorFields, unmessagedText } from "../src/internal/errorFields.ts"
import { toPerformError } from "../src/internal/threads/protocol.ts"

class Timeout extends Data.TaggedError("Timeout")<{ readonly host: string; readonly waited: bigint }> {}
class DbError extends Data.TaggedError("DbError")<{ readonly cause: unknown; readonly table?: string }> {}
class Refused extends Data.TaggedError("Refused")<{ readonly message: string }> {}

describe("errorFields", () => {
  it("writes the fields, not the tag, message, stack or cause", () => {
    assert.strictEqual(errorFields(new Timeout({ host: "db-2", waited: 30n })), '{"host":"db-2","waited":"30"}')
    assert.strictEqual(errorFields({ _tag: "Empty" }), undefined)
    assert.strictEqual(errorFields({ _tag: "Secret", token: Redacted.make("hunter2") }), '{"token":"<redacted>"}')
  })

  it("bounds what it writes: binary data as its size, long strings and the whole cut", () => {
    const json = errorFields({ _tag: "Big", body: Buffer.alloc(5_000_000), bytes: new Uint8Array(3), text: "y".repeat(5000) })!
    assert.match(json, /^\{"body":"\[5000000 bytes\]","bytes":"\[3 bytes\]","text":"y{1024}\.\.\."\}$/)
    const many = errorFields({ _tag: "Many", items: Array.from({ length: 10_000 }, (_, i) => ({ i })) })!
    assert.strictEqual(many.length, 4096 + 3)
  })

  it("gives nothing for fields it cannot write (a cycle, a getter that throws)", () => {
    const cyclic: Record<string, unknown> = { _tag: "Loop" }
    cyclic["self"] = cyclic
    assert.strictEqual(errorFields(cyclic), undefined)
    const throwing = Object.defineProperty({ _tag: "Getter" }, "value", {
      enumerable: true,
      get: () => {
        throw new Error("no")
      }
    })
    assert.strictEqual(errorFields(throwing), undefined)
  })

  it("an error without a message that wraps a cause says what the cause says, on one line", () => {
    assert.strictEqual(unmessagedText(new DbError({ cause: new Error("connection refused\n  at x") })), "cause: Error: connection refused")
    assert.strictEqual(
      unmessagedText(new DbError({ cause: new TypeError("bad"), table: "users" })),
      '{"table":"users"}; cause: TypeError: bad'
    )
    assert.strictEqual(unmessagedText(new DbError({ cause: new Refused({ message: "no" }) })), "cause: Refused: no")
    assert.strictEqual(unmessagedText(new DbError({ cause: "timed out" })), "cause: timed out")
    assert.strictEqual(unmessagedText(new DbError({ cause: 42 })), undefined)
    assert.strictEqual(unmessagedText(new DbError({ cause: new Error("y".repeat(2000)) }))!.length, "cause: ".length + 1024 + 3)
  })

  it("a thread worker's failure crosses with the same text as its message", () => {
    assert.strictEqual(toPerformError(new Timeout({ host: "db-2", waited: 1n })).message, '{"host":"db-2","waited":"1"}')
    assert.strictEqual(toPerformError({ _tag: "Plain", id: 1 }).message, '{"id":1}')
    assert.strictEqual(toPerformError(new Error("kept")).message, "kept")
    assert.strictEqual(toPerformError({ id: 2 }).message, '{"id":2}')
    assert.strictEqual(toPerformError(new DbError({ cause: new Error("refused") })).message, "cause: Error: refused")
  })
})
