/**
 * Which failed jobs of a workflow a retry runs again (`toRetry`), apart from
 * the database: a skipped step only along with a retried dependency, and
 * nothing that would wait for good on a step left out.
 */
import { assert, describe, it } from "@effect/vitest"
import { toRetry } from "../src/internal/sql/workflowOps.ts"

const job = (id: number, deps: ReadonlyArray<number> = [], skipped = false) => ({ id, deps, skipped })

describe("the jobs a workflow retry runs again", () => {
  it("every failed job, a skipped one only with a retried dependency, none that depends on one left out", () => {
    // 1 discarded; 2 cancelled after it; 3 skipped with 1 among its dependencies: all three again.
    assert.deepStrictEqual(toRetry([job(1), job(2, [1]), job(3, [1, 9], true)]), [1, 2, 3])
    // 4 skipped, its dependencies completed (not failed): left, and 5 after it, and 6 after 5.
    assert.deepStrictEqual(toRetry([job(4, [7, 8], true), job(5, [4]), job(6, [5])]), [])
    // Beside them, a failure elsewhere in the workflow is retried.
    assert.deepStrictEqual(toRetry([job(6, [5]), job(4, [7], true), job(5, [4]), job(10)]), [10])
    // A skipped step depending on a skipped step that a retried failure brings back: both again.
    assert.deepStrictEqual(toRetry([job(1), job(2, [1], true), job(3, [2], true)]), [1, 2, 3])
  })
})
