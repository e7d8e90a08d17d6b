/**
 * `BENCH_SCALE=statements npm run bench:scale`: what the database spends on
 * each statement of a drain, for a batch of 500 jobs on a table of 40,000:
 * the claim, the outcomes written as `completed` rows, and the outcomes with
 * `deleteCompleted`; next to a bare `DELETE ... WHERE id = ANY(...)`, what
 * graphile-worker and the raw-SQL queue do with a finished job. Each is timed
 * from the client, 30 times in turn; the table shows the minimum and median.
 * Its last line is this process's CPU per claimed job: what the node spends
 * building the claim and decoding its rows, apart from the database's noise.
 *
 * `BENCH_EXECUTING=100000` adds that many jobs executing on other nodes, in
 * the same queue, behind statistics taken before they started (as after a
 * burst): what an ack costs when it must not read other nodes' jobs.
 */
import { Duration, Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { now } from "../../src/ObanClock.ts"
import { fetchJobs } from "../../src/internal/sql/claims.ts"
import { ackJobs, type AckRow } from "../../src/internal/sql/acks.ts"
import { insertNoopJobs, pgLayer, withSchema } from "../common.ts"
import { fixed, median, textTable } from "./report.ts"

const prefix = process.env["BENCH_PREFIX"] ?? "bench_statements"
const batch = 500
const rounds = 30
const othersExecuting = Number(process.env["BENCH_EXECUTING"] ?? 0)

type Finish = "update" | "delete" | "bare delete"
const finishes: ReadonlyArray<Finish> = ["update", "delete", "bare delete"]

const timed = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.map(Effect.timed(self), ([duration, value]) => [Duration.toMillis(duration), value] as const)

/** Claims a batch and finishes it the given way; returns the two times in ms. */
const round = (finish: Finish) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const claim = crypto.randomUUID()
    const cpuBefore = process.cpuUsage()
    const [claimMs, fetched] = yield* timed(Effect.flatMap(now(sql), (time) =>
      fetchJobs(sql, prefix, time, { queue: "default", demand: batch, startNow: batch, node: "bench", producer: "p", claim })))
    const cpu = process.cpuUsage(cpuBefore)
    // This process's CPU for the claim (building it, reading and decoding its rows into jobs), per job.
    const claimCpuMicros = (cpu.user + cpu.system) / fetched.jobs.length
    const acks = fetched.jobs.map((job): AckRow => ({
      id: job.id,
      attempt: job.attempt,
      claim,
      state: "completed",
      delay_ms: null,
      give_back: false,
      error: null
    }))
    const [finishMs] = yield* timed(
      finish === "bare delete"
        ? Effect.asVoid(sql`DELETE FROM ${sql(prefix)}.oban_jobs WHERE id = ANY(${`{${acks.map((ack) => ack.id).join(",")}}`}::bigint[])`)
        : Effect.asVoid(Effect.flatMap(now(sql), (time) =>
          ackJobs(sql, prefix, time, "bench", acks, { deleteCompleted: finish === "delete" })))
    )
    return { claimMs, claimCpuMicros, finishMs }
  })

export const statementCosts = (url: string) =>
  Effect.gen(function*() {
    yield* insertNoopJobs(rounds * batch * finishes.length + batch, 1_000)
    if (othersExecuting > 0) {
      const sql = yield* SqlClient
      yield* sql`ANALYZE ${sql(prefix)}.oban_jobs`
      yield* sql`INSERT INTO ${sql(prefix)}.oban_jobs (worker, state, attempt, attempted_at, attempted_by)
        SELECT 'Noop', 'executing', 1, now(), ARRAY['other-' || (g % 4), 'p', 'c-' || (g / 500)]
        FROM generate_series(1, ${othersExecuting}) AS g`
    }
    const claims: Array<number> = []
    const claimCpu: Array<number> = []
    const times = new Map<Finish, Array<number>>(finishes.map((finish) => [finish, []]))
    for (let i = 0; i < rounds; i++) {
      for (const finish of finishes) {
        const { claimCpuMicros, claimMs, finishMs } = yield* round(finish)
        claims.push(claimMs)
        claimCpu.push(claimCpuMicros)
        times.get(finish)!.push(finishMs)
      }
    }
    const row = (name: string, values: ReadonlyArray<number>) => [name, fixed(Math.min(...values), 2), fixed(median(values), 2)]
    return {
      title: `Statement costs, batches of ${batch} (ms, ${rounds} rounds${
        othersExecuting > 0 ? `, ${othersExecuting} jobs executing on other nodes` : ""
      })`,
      table: textTable(["statement", "min", "median"], [
        row("claim (fetch)", claims),
        row("outcomes as completed rows (default)", times.get("update")!),
        row("outcomes deleted (deleteCompleted)", times.get("delete")!),
        row("bare DELETE by id (graphile-worker, raw SQL)", times.get("bare delete")!),
        row("claim: this process's CPU per claimed job, in µs", claimCpu)
      ]),
      problems: []
    }
  }).pipe((body) => withSchema(prefix, body), Effect.provide(pgLayer(url, 1)))
