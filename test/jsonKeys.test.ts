/**
 * Object keys with escapes read back exactly. `JSON.parse` in Node.js 24 and
 * 26 returns a key it saw before at the same place in an object instead of an
 * escaped key whose raw text starts with it (after `{"a":1,"a\\":2}` is alive,
 * `{"a":1,"a\n":2}` reads as `{"a":1,"a\\":2}`); see `src/internal/jsonParse.ts`.
 * Each test first parses such a look-alike with `JSON.parse` and keeps it, so
 * on those versions a read through `JSON.parse` would fail here; then it
 * checks every way a job's JSON comes back: reads, a worker's perform, unique
 * keys, workflow results and external inserts, against real PostgreSQL.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Ref, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as ExternalInsert from "../src/ExternalInsert.ts"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import * as Workflow from "../src/Workflow.ts"
import { hasEscapedKey, parseJson } from "../src/internal/jsonParse.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { jsonRoundTrip } from "./support/json.ts"
import { startNode, waitFor } from "./support/node.ts"

const prefix = uniquePrefix("json_keys")

/** Objects `JSON.parse` built, kept alive so that its guesses from them stay in place for the whole file. */
const lookAlikes: Array<unknown> = []
const primeWith = (text: string) => void lookAlikes.push(JSON.parse(text))

/** The args every test stores: the second key is a newline escape, the look-alike's a literal backslash. */
const escaped = { a: 1, "a\n": "newline" }
const lookAlike = String.raw`{"a": 1, "a\\": "backslash"}`

describe("parseJson", () => {
  it("reads an escaped key as itself after JSON.parse saw a key with a backslash in its place", () => {
    primeWith(String.raw`{"r":1,"\\":2}`)
    primeWith(String.raw`{"s":1,"\\n":2}`)
    assert.deepStrictEqual(Object.keys(parseJson(String.raw`{"r":1,"\n":2}`) as object), ["r", "\n"])
    assert.deepStrictEqual(Object.keys(parseJson(String.raw`{"s":1,"\n\n":2}`) as object), ["s", "\n\n"])
  })

  it("reads what JSON.stringify writes, compact and indented, for values with tricky keys", () => {
    // A seeded generator: the same values every run.
    let seed = 20261204
    const next = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31
      return seed % n
    }
    const keys = ["", "a", "\\", "\\n", "\n", "a\\", "a\n", "\"", "\\u0041", "\u0001", "__proto__", "toJSON", "中", "😀"]
    const value = (depth: number): unknown => {
      switch (next(depth === 0 ? 5 : 7)) {
        case 0:
          return null
        case 1:
          return next(2) === 0
        case 2:
          return [0, -0, 1.5e-7, -1e308, 5e-324, 42][next(6)]
        case 3:
          return keys[next(keys.length)]! + keys[next(keys.length)]!
        case 4:
          return "plain"
        case 5:
          return Array.from({ length: next(4) }, () => value(depth - 1))
        default: {
          const object: Record<string, unknown> = {}
          for (let i = next(5); i > 0; i--) {
            Object.defineProperty(object, keys[next(keys.length)]! + keys[next(keys.length)]!, {
              value: value(depth - 1),
              enumerable: true,
              writable: true,
              configurable: true
            })
          }
          return object
        }
      }
    }
    for (let run = 0; run < 2000; run++) {
      const given = value(3)
      for (const text of [JSON.stringify(given), JSON.stringify(given, null, 2)]) {
        assert.deepStrictEqual(parseJson(text), jsonRoundTrip(given), text)
      }
    }
  })

  it("reads nesting deeper than PostgreSQL stores without running out of call stack", () => {
    const depth = 50_000
    let value = parseJson(`${String.raw`{"\n":[`.repeat(depth)}1${"]}".repeat(depth)}`)
    for (let level = 0; level < depth; level++) value = ((value as Record<string, unknown>)["\n"] as Array<unknown>)[0]
    assert.strictEqual(value, 1)
  })

  it("tells escaped keys from escapes in values, in one pass however many escaped quotes a string holds", () => {
    const cases: ReadonlyArray<readonly [string, boolean]> = [
      [String.raw`{"v":"a\":b"}`, false],
      [String.raw`{"v":"\\","k":1}`, false],
      [String.raw`{"v":"\\","k\n":1}`, true],
      [String.raw`{"a\"b" : 1}`, true],
      [String.raw`["\n", {"k": "\n"}]`, false]
    ]
    for (const [text, escapedKey] of cases) assert.strictEqual(hasEscapedKey(text), escapedKey, text)
    // Tried from every quote, a pattern would rescan this string once per escaped quote in it: the
    // square of 200,000 steps, far past the test's timeout.
    const quotes = "\":".repeat(200_000)
    assert.deepStrictEqual(parseJson(JSON.stringify({ s: quotes, "k\n": 1 })), { s: quotes, "k\n": 1 })
    assert.isFalse(hasEscapedKey(JSON.stringify({ s: quotes })))
    // A string of millions of escapes, which a pattern would run out of backtracking room on.
    const lines = "\n".repeat(4_000_000)
    assert.deepStrictEqual(parseJson(JSON.stringify({ "k\n": lines })), { "k\n": lines })
  })

  it("refuses text that is not JSON with a SyntaxError, as JSON.parse does", () => {
    for (const text of [String.raw`{"\n":1`, String.raw`{"\n":1}x`, String.raw`{"\n":tru}`, String.raw`{"\n":1,}`, String.raw`[{"\n":01}]`]) {
      assert.isTrue(hasEscapedKey(text) || text.startsWith("["), text)
      assert.throws(() => parseJson(text), SyntaxError)
    }
  })
})

const Args = Schema.Record(Schema.String, Schema.Json)

layer(testLayer(prefix), { excludeTestServices: true })("escaped keys against PostgreSQL", (it) => {
  it.effect("getJob, a worker's perform and the insert's own result give the keys as stored", () =>
    Effect.gen(function*() {
      primeWith(lookAlike)
      const performed = yield* Ref.make<ReadonlyArray<unknown>>([])
      const Echo = Worker.make("JsonKeysEcho", {
        args: Args,
        queue: "json_keys",
        perform: (job) => Ref.update(performed, (all) => [...all, job.args])
      })
      const inserted = yield* Oban.insert(Echo.job(escaped, { meta: escaped }))
      assert.deepStrictEqual(inserted.meta["a\n"], "newline")
      const stored = yield* Oban.getJob(inserted.id)
      assert.isTrue(stored._tag === "Some")
      if (stored._tag === "Some") {
        assert.deepStrictEqual(stored.value.args, escaped)
        const { traceparent: _, ...meta } = stored.value.meta
        assert.deepStrictEqual(meta, escaped)
      }
      const node = yield* startNode({ workers: [Echo], queues: { json_keys: 1 } })
      yield* waitFor("the job to run", Effect.map(Ref.get(performed), (all) => all.length === 1))
      yield* node.stop
      assert.deepStrictEqual(yield* Ref.get(performed), [escaped])
    }))

  it.effect("unique args that differ only in an escaped key are two jobs, not a conflict", () =>
    Effect.gen(function*() {
      const Once = Worker.make("JsonKeysOnce", { args: Args, unique: { period: "forever" }, perform: () => Effect.void })
      // The key function's result and the args are both canonicalized from JSON text.
      const ByKeys = Worker.make("JsonKeysByKeys", {
        args: Args,
        unique: { period: "forever", keys: (args) => ({ ...args }) },
        perform: () => Effect.void
      })
      for (const worker of [Once, ByKeys]) {
        const first = yield* Oban.insert(worker.job({ a: 1, "a\\": "x" }))
        primeWith(String.raw`{"a":1,"a\\":"x"}`)
        const second = yield* Oban.insert(worker.job({ a: 1, "a\n": "x" }))
        assert.isFalse(second.conflict, worker.name)
        assert.notStrictEqual(second.id, first.id)
        const again = yield* Oban.insert(worker.job({ a: 1, "a\n": "x" }))
        assert.isTrue(again.conflict)
        assert.strictEqual(again.id, second.id)
      }
    }))

  it.effect("a workflow step's result and an external insert's jobs keep escaped keys", () =>
    Effect.gen(function*() {
      primeWith(lookAlike)
      const Produce = Worker.make("JsonKeysProduce", {
        args: Schema.Struct({}),
        queue: "json_keys_flow",
        result: Args,
        perform: () => Effect.succeed(escaped)
      })
      const seen = yield* Ref.make<ReadonlyArray<unknown>>([])
      const Consume = Worker.make("JsonKeysConsume", {
        args: Schema.Struct({}),
        queue: "json_keys_flow",
        perform: (job) =>
          Effect.gen(function*() {
            const results = yield* Workflow.results(job, Produce)
            yield* Ref.set(seen, results.map((result) => result.value))
          }).pipe(Effect.orDie)
      })
      yield* Oban.insertWorkflow(
        Workflow.make("json-keys").add("produce", Produce.job({})).add("consume", Consume.job({}), { deps: ["produce"] })
      )
      const node = yield* startNode({ workers: [Produce, Consume], queues: { json_keys_flow: 2 } })
      yield* waitFor("the consumer to read the result", Effect.map(Ref.get(seen), (all) => all.length === 1))
      yield* node.stop
      assert.deepStrictEqual(yield* Ref.get(seen), [escaped])

      const prepared = yield* ExternalInsert.prepare(Produce.job({}, { meta: escaped }))
      const sql = yield* SqlClient
      const rows = yield* sql.unsafe<ExternalInsert.Row>(prepared.insert.text, [...prepared.insert.values])
      const [job] = prepared.jobs(rows)
      const { traceparent: _, ...meta } = job!.meta
      assert.deepStrictEqual(meta, escaped)
    }))
})
