/**
 * How `events.ts` cuts what a thread sends to `maxPayloadBytes` (the
 * PostgreSQL tests in threadLogLimits.test.ts show it through a node): the
 * byte counts in its markers, cuts between characters, and the markers for
 * containers and binary data; and how a thread's `LogWindow` counts the
 * lines the node has not replayed yet.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import { cloneable, cloneableRecord, maxPayloadBytes, type Meter, toWireCause } from "../src/internal/threads/events.ts"
import * as LogWindow from "../src/internal/threads/logWindow.ts"

describe("thread events, cut to maxPayloadBytes", () => {
  it("values within the limit cross as they are", () => {
    const value = ["text", 1, true, null, { nested: [1n, new Date(0)] }, new Map([["k", "v"]]), new Set([1])]
    assert.deepStrictEqual(cloneable(value), value)
  })

  it("a string is cut between characters, and the marker counts the UTF-8 bytes that went", () => {
    // 2 bytes a character: the limit falls on a character boundary.
    const accents = "é".repeat(maxPayloadBytes)
    assert.strictEqual(cloneable(accents), `${"é".repeat(maxPayloadBytes / 2)}… [${maxPayloadBytes} bytes cut]`)
    // 4 bytes a character, after one byte: the limit falls inside a character, which goes whole.
    const faces = "a" + "😀".repeat(maxPayloadBytes / 2)
    const cut = cloneable(faces) as string
    const kept = "a" + "😀".repeat((maxPayloadBytes - 4) / 4)
    assert.strictEqual(cut, `${kept}… [${1 + 2 * maxPayloadBytes - Buffer.byteLength(kept)} bytes cut]`)
    assert.notInclude(cut, "\uFFFD")
  })

  it("what does not fit of an array, a record, a map or binary data is replaced by a marker", () => {
    const numbers = Array.from({ length: 100_000 }, (_, i) => i)
    const items = cloneable(numbers) as Array<unknown>
    assert.strictEqual(items.length, maxPayloadBytes / 8 + 1)
    assert.strictEqual(items.at(-1), `[${100_000 - maxPayloadBytes / 8} more items cut]`)
    assert.deepStrictEqual(
      cloneableRecord({ big: "x".repeat(maxPayloadBytes), after: 1, last: 2 }),
      { big: `${"x".repeat(maxPayloadBytes - 3)}… [3 bytes cut]`, "…": "[2 more keys cut]" }
    )
    const map = cloneable(new Map(numbers.map((i) => [i, i]))) as Map<unknown, unknown>
    assert.strictEqual(map.get("…"), `[${100_000 - maxPayloadBytes / 16} more items cut]`)
    assert.strictEqual(cloneable(new Uint8Array(1 << 20)), "[Uint8Array of 1048576 bytes cut]")
  })

  it("an error's message and stack are cut, and all the reasons of a cause share one limit", () => {
    const huge = "m".repeat(1 << 20)
    const [first, second] = toWireCause(Cause.fromReasons([Cause.makeDieReason(new Error(huge)), Cause.makeFailReason(huge)]))!
    const error = (first as { defect: Error }).defect
    assert.match(error.message, /^m+… \[\d+ bytes cut\]$/)
    assert.isAtMost(Buffer.byteLength(error.message), maxPayloadBytes + 30)
    assert.strictEqual((second as { error: string }).error, `… [${1 << 20} bytes cut]`)
  })
})

describe("a thread's log window", () => {
  it("is full at maxUnacknowledgedLogs lines, or maxUnacknowledgedLogBytes, until the node acknowledges them", () => {
    const window = LogWindow.make()
    for (let i = 0; i < LogWindow.maxUnacknowledgedLogs - 1; i++) window.add(10)
    window.sent()
    assert.isFalse(window.isFull())
    window.add(10)
    assert.isTrue(window.isFull(), "full by count, sent or not")
    window.acknowledged()
    assert.isFalse(window.isFull(), "the first chunk's lines left")
    window.sent()
    window.add(LogWindow.maxUnacknowledgedLogBytes)
    assert.isTrue(window.isFull(), "full by bytes")
    window.lost()
    assert.isFalse(window.isFull(), "lines that could not be sent are not waited for")
    window.add(LogWindow.maxUnacknowledgedLogBytes)
    window.sent()
    window.disconnected()
    assert.isFalse(window.isFull(), "a closed stream acknowledges nothing more")
  })

  it("a log line's parts count their bytes as the cut does", () => {
    const meter: Meter = { bytes: 0 }
    cloneable(["text", 1], meter)
    cloneableRecord({ key: "x".repeat(maxPayloadBytes * 2) }, meter)
    assert.strictEqual(meter.bytes, 4 + 8 + maxPayloadBytes)
  })
})
