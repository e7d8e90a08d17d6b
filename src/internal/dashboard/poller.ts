/**
 * The dashboard's one shared poller: a single set of aggregate queries
 * (counts, cluster view, throughput) per interval, whatever the number of
 * open pages. Pages rendered within an interval of the last refresh reuse
 * it; live pages subscribe to `changes`, and the loop refreshes only while
 * at least one of them listens.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as PubSub from "effect/PubSub"
import * as Semaphore from "effect/Semaphore"
import * as Stream from "effect/Stream"
import type * as Scope from "effect/Scope"
import { SqlClient } from "effect/sql/SqlClient"
import { plain } from "../sql/plain.ts"
import type { SqlError } from "effect/sql/SqlError"
import * as Cluster from "../../Cluster.ts"
import { Settings } from "../../Config.ts"
import type { MigrationError } from "../../Errors.ts"
import * as Jobs from "../../Jobs.ts"
import { orNotMigrated } from "../notMigrated.ts"
import { allQueueLimits, describeLimits } from "../sql/clusterLimits.ts"
import { throughputSince } from "../sql/throughput.ts"
import { countsVersion, type Snapshot, ThroughputWindow } from "./snapshot.ts"

export interface Poller {
  /** A snapshot no older than the interval: the last one, or a new one taken now (shared by concurrent callers). */
  readonly current: Effect.Effect<Snapshot, MigrationError | SqlError>
  /** Every new snapshot while the stream is consumed; the loop runs while anyone listens. */
  readonly changes: Stream.Stream<Snapshot>
  /** How many refreshes ran (each one set of queries). */
  readonly refreshes: Effect.Effect<number>
}

export const makePoller = (
  interval: Duration.Input
): Effect.Effect<Poller, never, SqlClient | Scope.Scope> =>
  Effect.gen(function*() {
    const sql = plain(yield* SqlClient)
    const settings = yield* Settings
    const millis = Duration.toMillis(Duration.fromInputUnsafe(interval))
    const lock = yield* Semaphore.make(1)
    const published = yield* PubSub.sliding<Snapshot>(1)
    const window = new ThroughputWindow()
    let latest: { readonly snapshot: Snapshot; readonly at: number } | undefined
    let listeners = 0
    let refreshes = 0

    const refresh = Effect.gen(function*() {
      const started = yield* Clock.currentTimeMillis
      const lookback = window.lookback(started, latest?.at)
      const [counts, cluster, rows, limits] = yield* Effect.all([
        Jobs.counts(),
        Cluster.view,
        throughputSince(sql, settings.prefix, lookback),
        orNotMigrated(settings.prefix)(allQueueLimits(sql, settings.prefix))
      ], { concurrency: 4 }).pipe(Effect.provideService(SqlClient, sql), Effect.provideService(Settings, settings))
      window.apply(rows, lookback)
      const snapshot: Snapshot = {
        now: cluster.now,
        counts,
        cluster,
        throughput: window.series(counts.queues.map((entry) => entry.queue)),
        limits: new Map(
          limits.map((entry) => [entry.queue, describeLimits(entry.limits)] as const).filter(([, text]) => text !== "")
        ),
        version: countsVersion(counts)
      }
      latest = { snapshot, at: started }
      refreshes += 1
      yield* PubSub.publish(published, snapshot)
      return snapshot
    })

    const current = lock.withPermits(1)(
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        latest !== undefined && now - latest.at < millis * 0.9 ? Effect.succeed(latest.snapshot) : refresh)
    )

    yield* Effect.gen(function*() {
      while (true) {
        if (listeners > 0) {
          yield* current.pipe(
            Effect.tapCause((cause) => Effect.logWarning("dashboard: refreshing the snapshot failed", cause)),
            Effect.ignore
          )
        }
        yield* Effect.sleep(millis)
      }
    }).pipe(Effect.forkScoped)
    yield* Effect.addFinalizer(() => PubSub.shutdown(published))

    const changes = Stream.unwrap(Effect.gen(function*() {
      const subscription = yield* PubSub.subscribe(published)
      listeners += 1
      yield* Effect.addFinalizer(() => Effect.sync(() => listeners -= 1))
      return Stream.fromEffectRepeat(PubSub.take(subscription))
    }))

    return { current, changes, refreshes: Effect.sync(() => refreshes) }
  })
