/** The rescuer's log line counts every orphan it took, and says how each went on. */
import { assert, describe, it } from "@effect/vitest"
import { rescueLine } from "../src/internal/rescueLine.ts"

describe("rescueLine", () => {
  it("a rescue that only cancelled says it rescued that job", () => {
    assert.strictEqual(
      rescueLine({ rescued: 0, discarded: 0, cancelled: 1 }),
      "rescued 1 orphaned job(s): 1 cancelled (their cancel was requested)"
    )
  })

  it("names each way the jobs went on, and only those", () => {
    assert.strictEqual(
      rescueLine({ rescued: 3, discarded: 1, cancelled: 0 }),
      "rescued 4 orphaned job(s): 3 to run again, 1 discarded (out of attempts)"
    )
    assert.strictEqual(
      rescueLine({ rescued: 2, discarded: 1, cancelled: 1 }),
      "rescued 4 orphaned job(s): 2 to run again, 1 discarded (out of attempts), 1 cancelled (their cancel was requested)"
    )
  })
})
