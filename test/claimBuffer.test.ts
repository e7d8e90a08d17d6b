/**
 * The producer's claim buffer on its own: when a claim is worth it and how
 * many jobs it asks for. Pure logic, no database.
 */
import { assert, describe, it } from "@effect/vitest"
import type { Job } from "../src/Job.ts"
import * as ClaimBuffer from "../src/internal/claimBuffer.ts"

const job = (id: number) => ({ id }) as Job

describe("claim buffer", () => {
  it("claims only the free slots until a job has finished, and for queues with cluster-wide limits", () => {
    const buffer = ClaimBuffer.make()
    assert.strictEqual(buffer.demand(10, 3), 7)
    buffer.recordDuration(1)
    assert.strictEqual(buffer.demand(10, 3, false), 7)
    buffer.add([job(1), job(2)], new Set())
    assert.strictEqual(buffer.demand(10, 3, false), 5)
  })

  it("claims about a second of short jobs ahead, at most 1,000 and 500 at a time, and none of long ones", () => {
    const short = ClaimBuffer.make()
    short.recordDuration(10)
    // 10 slots of 10 ms jobs: 1,000 jobs a second, all of them ahead; one claim takes 500...
    assert.strictEqual(short.demand(10, 0), ClaimBuffer.maxClaim)
    short.add(Array.from({ length: 500 }, (_, i) => job(i)), new Set())
    // ...and with those waiting, the next 500 are worth a claim at once (it overlaps their run)...
    assert.strictEqual(short.demand(10, 0), 500)
    short.add(Array.from({ length: 500 }, (_, i) => job(500 + i)), new Set())
    // ...after which the pipeline (10 slots + 1,000 ahead) is full but for 10 jobs: not worth a claim.
    assert.strictEqual(short.demand(10, 0), 0)
    // Free slots beyond one claim's worth are claimed all at once, as they all start.
    const wide = ClaimBuffer.make()
    wide.recordDuration(1)
    assert.strictEqual(wide.demand(2_000, 0), 2_000)
    const medium = ClaimBuffer.make()
    medium.recordDuration(50)
    assert.strictEqual(medium.demand(10, 0), 10 + 200)
    const long = ClaimBuffer.make()
    long.recordDuration(ClaimBuffer.shortJobMillis)
    assert.strictEqual(long.demand(10, 0), 10)
  })

  it("with jobs waiting, refills only once a quarter of the pipeline is empty", () => {
    const buffer = ClaimBuffer.make()
    buffer.recordDuration(50)
    // Pipeline of 10 running + 200 ahead: a claim is worth it at 53 missing jobs or more.
    buffer.add(Array.from({ length: 200 }, (_, i) => job(i)), new Set())
    assert.strictEqual(buffer.demand(10, 10), 0)
    buffer.take(52)
    assert.strictEqual(buffer.demand(10, 10), 0, "52 missing: not yet")
    buffer.take(1)
    assert.strictEqual(buffer.demand(10, 10), 53)
  })

  it("gives back every waiting job with whether it was claimed ahead, and forgets a cancelled one", () => {
    const buffer = ClaimBuffer.make()
    buffer.add([job(1), job(2), job(3)], new Set([2, 3]))
    assert.deepStrictEqual(buffer.forget(3), { job: job(3), ahead: true })
    assert.isUndefined(buffer.forget(3))
    assert.deepStrictEqual(buffer.takeAll().map(({ job, ahead }) => [job.id, ahead]), [[1, false], [2, true]])
    assert.strictEqual(buffer.size(), 0)
  })
})
