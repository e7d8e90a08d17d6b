/**
 * The traceparent an insert stores for its span: only ids W3C allows are
 * propagated (a tracer may hand out others: placeholders, uppercase hex, ids
 * of the wrong length), B3's 64-bit trace ids are padded to W3C's length, and
 * what is stored reads back as the same parent.
 */
import { assert, describe, it } from "@effect/vitest"
import { Tracer } from "effect"
import { parentFromMeta, traceparentOf } from "../src/internal/telemetry.ts"

const traceId = "4bf92f3577b34da6a3ce929d0e0e4736"
const spanId = "00f067aa0ba902b7"
const span = (ids: { readonly traceId: string; readonly spanId: string }, sampled = true) =>
  Tracer.externalSpan({ ...ids, sampled })

describe("traceparentOf", () => {
  it("writes a W3C traceparent of a valid span, with its sampled flag", () => {
    assert.strictEqual(traceparentOf(span({ traceId, spanId })), `00-${traceId}-${spanId}-01`)
    assert.strictEqual(traceparentOf(span({ traceId, spanId }, false)), `00-${traceId}-${spanId}-00`)
  })

  it("left-pads a 64-bit trace id to 32 digits", () => {
    assert.strictEqual(
      traceparentOf(span({ traceId: "a3ce929d0e0e4736", spanId })),
      `00-0000000000000000a3ce929d0e0e4736-${spanId}-01`
    )
  })

  it("propagates nothing for ids W3C does not allow", () => {
    const refused = [
      { traceId: "0".repeat(32), spanId },
      { traceId, spanId: "0".repeat(16) },
      { traceId: traceId.toUpperCase(), spanId },
      { traceId, spanId: spanId.toUpperCase() },
      { traceId: `${traceId.slice(1)}g`, spanId },
      { traceId, spanId: `${spanId.slice(1)}-` },
      { traceId: traceId.slice(1), spanId },
      { traceId, spanId: `${spanId}0` },
      { traceId: "noop", spanId: "noop" },
      { traceId: "", spanId: "" }
    ]
    for (const ids of refused) assert.isUndefined(traceparentOf(span(ids)), JSON.stringify(ids))
  })

  it("accepts every hex digit, and a single non-zero digit among zeros", () => {
    const digits = "0123456789abcdef"
    assert.isDefined(traceparentOf(span({ traceId: digits + digits, spanId: digits })))
    assert.isDefined(traceparentOf(span({ traceId: `${"0".repeat(31)}1`, spanId: `f${"0".repeat(15)}` })))
  })

  it("stores what the job's perform span continues", () => {
    const stored = traceparentOf(span({ traceId, spanId }, false))!
    const parent = parentFromMeta({ traceparent: stored })
    assert.deepStrictEqual(
      parent === undefined ? undefined : { traceId: parent.traceId, spanId: parent.spanId, sampled: parent.sampled },
      { traceId, spanId, sampled: false }
    )
  })

  it("reads the sampled flag from the lowest bit of the flags, and refuses a malformed traceparent", () => {
    const sampledOf = (flags: string) => parentFromMeta({ traceparent: `00-${traceId}-${spanId}-${flags}` })?.sampled
    assert.deepStrictEqual(["00", "01", "02", "03"].map(sampledOf), [false, true, false, true])
    const malformed = [
      `00-${traceId.toUpperCase()}-${spanId}-01`,
      `00-${traceId}-${"0".repeat(16)}-01`,
      `01-${traceId}-${spanId}-01`,
      `00-${traceId}-${spanId}-1`,
      `00-${traceId}-${spanId}-01-extra`
    ]
    for (const traceparent of malformed) assert.isUndefined(parentFromMeta({ traceparent }), traceparent)
    assert.isUndefined(parentFromMeta({ traceparent: 42 }))
  })
})
