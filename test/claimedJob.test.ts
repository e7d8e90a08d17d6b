/**
 * What `perform` sees of a job a producer claimed: the fetch returns meta,
 * tags and errors as null when they hold their empty default (so the driver
 * parses nothing for them), and the job must still carry them as stored:
 * empty ones as `{}` and `[]`, others as written, and the errors of earlier
 * attempts on a retry.
 */
import { assert, layer } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { startNode, waitFor } from "./support/node.ts"

const prefix = uniquePrefix("claimed")

interface Seen {
  readonly attempt: number
  readonly meta: Readonly<Record<string, unknown>>
  readonly tags: ReadonlyArray<string>
  readonly errors: ReadonlyArray<string>
}
const seen = new Map<number, Array<Seen>>()

const Recording = Worker.make("Recording", {
  args: Schema.Struct({ failFirst: Schema.Boolean }),
  perform: (job) =>
    Effect.suspend(() => {
      const entry: Seen = {
        attempt: job.attempt,
        meta: { ...job.meta },
        tags: [...job.tags],
        errors: job.errors.map((error) => error.message)
      }
      seen.set(job.id, [...(seen.get(job.id) ?? []), entry])
      return job.args.failFirst && job.attempt === 1 ? Effect.fail("first attempt fails") : Effect.void
    })
})

layer(testLayer(prefix), { excludeTestServices: true })("a claimed job", (it) => {
  it.effect("carries its meta, tags and errors, empty or not, and a retry sees the earlier attempt's error", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const plain = yield* Oban.insert(Recording.job({ failFirst: false }))
      // Inserted without the library, as another program may: meta stays the empty object.
      const [bare] = yield* sql<{ id: number }>`
        INSERT INTO ${sql(prefix)}.oban_jobs (queue, worker, args) VALUES ('default', 'Recording', '{"failFirst":false}')
        RETURNING id::int AS id`
      const tagged = yield* Oban.insert(Recording.job({ failFirst: true }, {
        tags: ["billing", "eu"],
        meta: { source: "test" },
        backoff: { type: "fixed", delay: "10 millis" }
      }))
      const node = yield* startNode({ prefix, queues: { default: 5 }, workers: [Recording], stageInterval: "50 millis" })
      yield* waitFor("every attempt to run", Effect.sync(() => (seen.get(tagged.id)?.length ?? 0) === 2 && seen.has(plain.id) && seen.has(bare!.id)))
      yield* node.stop

      const plainSeen = seen.get(plain.id)![0]!
      assert.deepStrictEqual([plainSeen.tags, plainSeen.errors], [[], []])
      assert.deepStrictEqual(Object.keys(plainSeen.meta).filter((key) => key !== "traceparent"), [])
      assert.deepStrictEqual(seen.get(bare!.id), [{ attempt: 1, meta: {}, tags: [], errors: [] }])

      const [first, second] = seen.get(tagged.id)!
      assert.deepStrictEqual([first!.attempt, first!.tags, first!.meta["source"], first!.errors], [1, ["billing", "eu"], "test", []])
      assert.deepStrictEqual([second!.attempt, second!.tags, second!.meta["source"]], [2, ["billing", "eu"], "test"])
      assert.strictEqual(second!.errors.length, 1)
      assert.match(second!.errors[0]!, /first attempt fails/)
    }).pipe(Effect.scoped))
})
