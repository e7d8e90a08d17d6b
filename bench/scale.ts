/**
 * `npm run bench:scale`: how effect-oban holds up at scale (not part of CI,
 * takes 10-20 minutes). Its sections, each printing its own table:
 *
 * - `curve`: a drain by 1, 2 and 4 processes, next to raw SQL (bench/scale/curve.ts);
 * - `big`: drain throughput and fetch latency on a table holding 10 million
 *   finished jobs, against an empty one (bench/scale/bigTable.ts);
 * - `prune`: the pruner under a sustained 10,000 jobs/s (bench/scale/pruning.ts);
 * - `memory`: RSS and heap of a node draining a 100,000-job backlog (bench/scale/memory.ts);
 * - `statements`: the database's time per claim and per batch of outcomes (bench/scale/statements.ts);
 * - `node`: the node's CPU per job in a drain, apart from the rest of the benchmark (bench/scale/nodeCost.ts);
 * - `onejob`: the database's execution time of a one-job insert and claim, next to raw SQL's (bench/scale/oneJobStatements.ts);
 * - `batch`: the database's execution time per job of a batch insert of 1,000, next to raw SQL's (bench/scale/batchInsert.ts).
 *
 * `BENCH_SCALE=curve,memory` runs a subset. Uses DATABASE_URL when set, else
 * an embedded durable server. Exits non-zero when a check failed.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Console, Effect, Runtime } from "effect"
import { startDatabase } from "../support/database.ts"
import { serverVersion } from "./common.ts"
import { batchInsert } from "./scale/batchInsert.ts"
import { bigTable } from "./scale/bigTable.ts"
import { processCurve } from "./scale/curve.ts"
import { memoryOfDrain } from "./scale/memory.ts"
import { nodeCost } from "./scale/nodeCost.ts"
import { oneJobStatements } from "./scale/oneJobStatements.ts"
import { prunerUnderLoad } from "./scale/pruning.ts"
import { statementCosts } from "./scale/statements.ts"

interface Section {
  readonly title: string
  readonly table: string
  readonly notes?: ReadonlyArray<string> | undefined
  readonly problems: ReadonlyArray<string>
}

const sections: ReadonlyArray<readonly [string, (url: string) => Effect.Effect<Section, unknown>]> = [
  ["curve", processCurve],
  ["big", bigTable],
  ["prune", prunerUnderLoad],
  ["memory", memoryOfDrain],
  ["statements", statementCosts],
  ["node", nodeCost],
  ["onejob", oneJobStatements],
  ["batch", batchInsert]
]

const chosen = (process.env["BENCH_SCALE"] ?? "").split(",").map((name) => name.trim()).filter((name) => name !== "")

const program = Effect.gen(function*() {
  const database = yield* Effect.acquireRelease(
    Effect.promise(() => startDatabase({ durable: true })),
    (database) => Effect.promise(() => database.stop())
  )
  const version = yield* serverVersion(database.url)
  const results: Array<Section> = []
  for (const [key, run] of sections) {
    if (chosen.length > 0 && !chosen.includes(key)) continue
    yield* Console.error(`running ${key} ...`)
    results.push(
      yield* run(database.url).pipe(
        Effect.catchCause((cause) => Effect.succeed<Section>({ title: key, table: "(crashed)", problems: [Cause.pretty(cause)] }))
      )
    )
  }
  yield* Console.log(
    `\nNode ${process.version}, PostgreSQL ${version} (${database.embedded ? "embedded, durable" : "DATABASE_URL"})`
  )
  for (const section of results) {
    yield* Console.log(`\n${section.title}\n\n${section.table}`)
    for (const note of section.notes ?? []) yield* Console.log(note)
    if (section.problems.length > 0) {
      yield* Console.error(`\n${section.title} FAILED:\n  ${section.problems.join("\n  ")}`)
      yield* Effect.sync(() => {
        process.exitCode = 1
      })
    }
  }
}).pipe(Effect.scoped)

NodeRuntime.runMain(program, {
  teardown: (exit, onExit) => Runtime.defaultTeardown(exit, (code) => onExit(code !== 0 ? code : Number(process.exitCode ?? 0)))
})
