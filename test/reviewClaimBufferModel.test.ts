/**
 * Review probe: the claim buffer's head index against a plain array model, over random adds, takes,
 * forgets (also of ids taken earlier and claimed again) and takeAlls.
 */
import { assert, describe, it } from "@effect/vitest"
import type { Job } from "../src/Job.ts"
import * as ClaimBuffer from "../src/internal/claimBuffer.ts"

describe("claim buffer model", () => {
  it("matches a plain array whatever the sequence", () => {
    let seed = 42
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31
      return seed % n
    }
    for (let round = 0; round < 200; round++) {
      const buffer = ClaimBuffer.make()
      let model: Array<{ job: Job; ahead: boolean }> = []
      let next = 1
      for (let step = 0; step < 400; step++) {
        const op = random(10)
        if (op < 3) {
          const count = random(120)
          // Ids sometimes repeat one taken before (a job claimed again after a rescue).
          const jobs = Array.from({ length: count }, () => ({ id: random(4) === 0 && next > 10 ? 1 + random(next - 1) : next++ }) as Job)
            .filter((job, i, all) => all.findIndex((other) => other.id === job.id) === i && !model.some((m) => m.job.id === job.id))
          const ahead = new Set(jobs.filter(() => random(2) === 0).map((job) => job.id))
          buffer.add(jobs, ahead)
          for (const job of jobs) model.push({ job, ahead: ahead.has(job.id) })
        } else if (op < 7) {
          const n = random(5) === 0 ? 1 : random(80)
          const taken = buffer.take(n)
          const expected = n <= 0 ? [] : model.splice(0, n)
          assert.deepStrictEqual(taken.map((job) => job.id), expected.map((m) => m.job.id))
        } else if (op < 9) {
          const id = random(next + 1)
          const got = buffer.forget(id)
          const index = model.findIndex((m) => m.job.id === id)
          const expected = index === -1 ? undefined : model.splice(index, 1)[0]
          assert.deepStrictEqual(got === undefined ? undefined : [got.job.id, got.ahead], expected === undefined ? undefined : [expected.job.id, expected.ahead])
        } else {
          const all = buffer.takeAll()
          assert.deepStrictEqual(all.map((e) => [e.job.id, e.ahead]), model.map((m) => [m.job.id, m.ahead]))
          model = []
        }
        assert.strictEqual(buffer.size(), model.length)
        assert.deepStrictEqual(buffer.ids(), model.map((m) => m.job.id))
      }
    }
  })
})
