import { assert, describe, it } from "@effect/vitest"
import { toJsonText } from "../src/internal/jsonText.ts"

const textOf = (value: unknown, maxBytes = 1024): string => {
  const result = toJsonText(value, "args", maxBytes)
  if (result._tag === "JsonRefusal") assert.fail(result.message)
  return result.text
}

const refusalOf = (value: unknown, maxBytes = 1024): string => {
  const result = toJsonText(value, "args", maxBytes)
  if (result._tag === "JsonText") assert.fail(`accepted ${result.text}`)
  return result.message
}

describe("toJsonText", () => {
  it("writes numbers as JSON.stringify does", () => {
    for (const n of [0, -0, 1, -1.5, 1e21, 1e-7, 5e-324, Number.MAX_VALUE, 2 ** 53 + 2, 0.1 + 0.2]) {
      assert.strictEqual(textOf({ n }), JSON.stringify({ n }))
    }
  })

  it("counts a number as long as PostgreSQL writes it back (without an exponent), against the limit", () => {
    // 1e+300 is 6 characters of JSON and 301 as jsonb prints it; 100 of them are about 30 KB, not 700 bytes.
    assert.include(refusalOf(Array.from({ length: 100 }, () => 1e300), 16 * 1024), "is more than 16384 bytes of JSON, the limit")
    assert.include(refusalOf(Array.from({ length: 100 }, () => 5e-324), 16 * 1024), "the limit")
    // Those without an exponent count as written.
    assert.strictEqual(textOf(Array.from({ length: 100 }, () => 123456.25), 16 * 1024).length, 100 * 10 + 1)
  })

  it("a key refused once is refused every time, and one accepted before still reads back", () => {
    const bad = "k\udc00"
    for (let round = 0; round < 3; round++) {
      assert.include(refusalOf({ [bad]: 1 }), "the key of args")
      assert.include(refusalOf({ ["n\u0000ul"]: 1 }), "NUL")
      assert.strictEqual(textOf({ "a \"quoted\" key": round }), JSON.stringify({ "a \"quoted\" key": round }))
    }
  })

  it("a key seen before still counts towards the size limit", () => {
    const key = "k".repeat(40)
    assert.strictEqual(textOf({ [key]: 1 }, 64), `{"${key}":1}`)
    // Twice the key does not fit in 64 bytes, though the key is known by now.
    assert.include(refusalOf([{ [key]: 1 }, { [key]: 1 }], 64), "more than 64 bytes")
  })
})
