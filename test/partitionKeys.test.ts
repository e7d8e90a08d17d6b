/**
 * A partition key that the args of a limited queue's workers do not have (a
 * misspelt `accountId`) is named at the node's start: every job would share
 * one partition, and a per-account limit of 1 would run the queue one job at a time.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { unknownPartitionKeys } from "../src/internal/partitionKeys.ts"
import { unlimited } from "../src/internal/queueLimits.ts"
import * as Worker from "../src/Worker.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { startLogged, waitFor } from "./support/node.ts"

const Sync = Worker.make("PartitionSync", {
  args: Schema.Struct({ accountId: Schema.String, full: Schema.Boolean }),
  queue: "sync",
  perform: () => Effect.void
})
const Renamed = Worker.make("PartitionRenamed", {
  args: Schema.Struct({ account: Schema.String }).pipe(Schema.encodeKeys({ account: "account_id" })),
  queue: "renamed",
  perform: () => Effect.void
})
const Loose = Worker.make("PartitionLoose", {
  args: Schema.Record(Schema.String, Schema.String),
  queue: "loose",
  perform: () => Effect.void
})

const byArgs = (key: string) => ({ ...unlimited, global: 1, partition: { by: "args" as const, key } })

describe("partition keys checked at start", () => {
  it("names a key the queue's workers do not store, with the one meant", () => {
    const workers = [Sync, Renamed, Loose]
    assert.deepStrictEqual(unknownPartitionKeys([{ name: "sync", limits: byArgs("acountId") }], workers), [
      'queue sync partitions its limits by args key "acountId", which the args of its workers (PartitionSync) do not have ' +
      '(did you mean "accountId"?): jobs without it share one partition, so the limit holds for all of them together'
    ])
    // The rate's partition too.
    const rate = { ...unlimited, rate: { limit: 5, periodMillis: 1_000, partition: { by: "args" as const, key: "nope" } } }
    assert.strictEqual(unknownPartitionKeys([{ name: "sync", limits: rate }], workers).length, 1)
  })

  it("says nothing where the key is there, stored under its encoded name, or cannot be known", () => {
    const workers = [Sync, Renamed, Loose]
    const quiet = [
      { name: "sync", limits: byArgs("accountId") },
      // Stored as account_id: that is the key a partition reads (args ->> key).
      { name: "renamed", limits: byArgs("account_id") },
      // Args without fixed fields, a queue no worker defaults to, by worker, or no limits.
      { name: "loose", limits: byArgs("anything") },
      { name: "elsewhere", limits: byArgs("anything") },
      { name: "sync", limits: { ...unlimited, global: 1, partition: { by: "worker" as const } } },
      { name: "sync", limits: undefined }
    ]
    assert.deepStrictEqual(unknownPartitionKeys(quiet, workers), [])
    assert.strictEqual(unknownPartitionKeys([{ name: "renamed", limits: byArgs("account") }], workers).length, 1)
  })
})

const prefix = uniquePrefix("partition_keys")

layer(testLayer(prefix), { excludeTestServices: true })("a node with a misspelt partition key", (it) => {
  it.effect("warns at start", () =>
    Effect.gen(function*() {
      const { lines, stop } = yield* startLogged({
        prefix,
        node: "keys-node",
        queues: { sync: { limit: 5, global: 1, partition: { by: "args", key: "acountId" } } },
        workers: [Sync]
      })
      yield* waitFor("its start", Effect.sync(() => lines.some((line) => line.text.startsWith("node keys-node running"))))
      yield* stop
      assert.isTrue(lines.some((line) => line.text.startsWith('queue sync partitions its limits by args key "acountId"')))
    }).pipe(Effect.scoped), 20_000)
})
