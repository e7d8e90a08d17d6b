/**
 * A producer's registration and heartbeat: its row in `oban_producers`,
 * written at start (on the shared pool) and refreshed every
 * `heartbeatInterval` on the node's own connection; the stored limit and
 * paused flag read back with each beat; and the judgement of whether the
 * producer may still claim, which it may not once its heartbeats have failed
 * for nearly `rescueAfter` (a rescuer could then take its jobs).
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { SqlClient } from "effect/sql/SqlClient"
import { now } from "../ObanClock.ts"
import { tracked } from "./activity.ts"
import type { Options } from "./producerTypes.ts"
import type * as QueueLimiter from "./queueLimiter.ts"
import { retryDelay } from "./retryDelay.ts"
import { beat, type Namesakes, type ProducerState, registerProducer, storeQueueState } from "./sql/producers.ts"
import * as FailureStreak from "./failureStreak.ts"

/**
 * The producer's settings that commands change locally and heartbeats read
 * back: `changes` counts local commands, so that a stored state read before
 * one does not undo it.
 */
export interface Control {
  limit: number
  paused: boolean
  /** Local commands so far (any), and pauses and resumes among them. */
  changes: number
  pauseChanges: number
  /**
   * Pauses and resumes applied here that carried no count (commands for
   * this node alone), and the highest count carried by those that did: a
   * registration tells by them whether what arrived while it ran was only
   * commands it has read the outcome of already.
   */
  uncountedPauseChanges: number
  highestCountApplied: string | undefined
  /**
   * The queue's count of pauses and resumes for every node
   * (`oban_queues.pause_commands`) as this producer last read it. A node
   * whose row was removed (dead past `rescuer.forgetAfter`) registers again: if the count
   * moved meanwhile, it missed such a command (its row and signal lost) and
   * takes the queue's pause; otherwise it keeps its own state.
   */
  pauseCommandsSeen: string | undefined
}

export interface LivenessOptions {
  readonly options: Options
  readonly producerId: string
  readonly control: Control
  readonly running: () => number
  readonly limiter: QueueLimiter.QueueLimiter
  /**
   * Gives back the jobs waiting here, in the background: after a long outage or a stall their claims
   * may have been rescued (those are left alone), and a claim sent before a stall may have taken jobs
   * after the rescue (those go back at once rather than wait for the node's reconciler).
   */
  readonly giveBackWaiting: Effect.Effect<void>
  /** The queue's cluster-wide limits changed. */
  readonly limitsChanged: Effect.Effect<void>
  readonly wake: Effect.Effect<void>
  /** Starts the waiting jobs: heartbeats get through again. */
  readonly restored: Effect.Effect<void>
  /** The clock heartbeats are timed by, read synchronously by `startable`. */
  readonly clock: Clock.Clock
  /** Gives back the jobs claimed ahead: the stored state paused the queue (a signal this node missed). */
  readonly pausedByRow: Effect.Effect<void>
}

export interface ProducerLiveness {
  /** Whether the producer's row has been written once. */
  readonly registered: () => boolean
  /**
   * Whether jobs may start now: the last heartbeat got through, recently
   * enough that no rescuer can have judged this producer dead (a process
   * that stalled longer, its event loop blocked or the machine paused, may
   * hold jobs that were rescued and run elsewhere meanwhile: they wait for
   * the next heartbeat, which tells), and the producer is not judged lost.
   */
  readonly startable: () => boolean
  /**
   * Whether the last heartbeat is recent enough that no rescuer can have
   * judged this producer dead. Past that, it stops claiming (and says so)
   * until a heartbeat gets through: jobs it claimed earlier may be rescued and
   * run elsewhere. The jobs it runs keep running (delivery is at least once);
   * their acks land only if the job was not claimed again meanwhile.
   */
  readonly checkAlive: Effect.Effect<boolean>
  /** Registers the producer at once, then beats on schedule, for the scope's life. */
  readonly start: Effect.Effect<void, never, Scope.Scope>
  /**
   * Remembers a count of the queue's pauses and resumes for every node (read,
   * or carried by a signal) past the one remembered; true when it is older
   * than that one (a later command was seen already).
   */
  readonly rememberPauseCommands: (count: string | undefined) => boolean
}

export const make = (input: LivenessOptions): ProducerLiveness => {
  const { control, limiter, options, producerId } = input
  let registered = false
  let lost = false
  let beatFailing = false
  /** When the last heartbeat that got through ended, on the node's clock (virtual under `TestClock`). */
  let lastBeat = 0
  /**
   * When it was sent, in real time (`performance.now()`): a process that stalled (its event loop
   * blocked, its machine paused) reads a heartbeat's reply late, while a rescuer judged the row by when
   * the statement ran. A stall is a real-time event, and `TestClock` moving on while a heartbeat is on
   * its way is none.
   */
  let lastBeatSentReal = 0
  /**
   * The other rows of this node and queue as its registration saw them,
   * until a heartbeat finds one of them beaten since or a new one (a live
   * process under the same name: the node warns once). A crashed
   * incarnation's row is as fresh as a live one's at first; only a live
   * one's moves on.
   */
  let namesakesAtStart: Namesakes | undefined
  const heartbeatMillis = Duration.toMillis(options.heartbeatInterval)
  const rescueAfterMillis = Duration.toMillis(options.rescueAfter)
  // Stop claiming a heartbeat interval before a rescuer could judge this producer dead.
  const lostAfterMillis = Math.max(heartbeatMillis, rescueAfterMillis - heartbeatMillis)
  const logs = { component: "Producer", queue: options.queue, node: options.node }

  /**
   * Remembers the queue's count of pauses and resumes for every node, unless
   * a later one is remembered already: a heartbeat's subquery reads its
   * snapshot, which may predate a command whose row update it waited for and
   * whose signal brought the later count.
   */
  const rememberPauseCommands = (count: string | undefined): boolean => {
    const seen = control.pauseCommandsSeen
    if (count === undefined) return false
    if (seen === undefined || BigInt(count) > BigInt(seen)) {
      control.pauseCommandsSeen = count
      return false
    }
    return BigInt(count) < BigInt(seen)
  }

  /**
   * Remembers the count a heartbeat or registration read. A read is never
   * older than a count remembered before its statement began (that command
   * had committed), so a lower one means the count was reset (the queue's
   * row removed, as a test's TRUNCATE does): it is taken, or signals of later
   * commands would all look older than the one remembered.
   */
  const readPauseCommands = (read: string | undefined, seenAtStart: string | undefined) => {
    if (
      read !== undefined && seenAtStart !== undefined && BigInt(read) < BigInt(seenAtStart) &&
      control.pauseCommandsSeen === seenAtStart
    ) {
      control.pauseCommandsSeen = read
      control.highestCountApplied = undefined
    } else {
      rememberPauseCommands(read)
    }
  }

  /** Warns, once, when a heartbeat finds a namesake's row that was not there at registration or has beaten since. */
  const checkNamesakes = (now: Namesakes): Effect.Effect<void> => {
    const seen = namesakesAtStart
    if (seen === undefined) return Effect.void
    for (const id in now) {
      if (seen[id] === now[id]) continue
      namesakesAtStart = undefined
      return Effect.logWarning(
        `another live process runs queue ${options.queue} under the node name ${options.node}; ` +
          "each keeps its own producer rows and jobs, but give every process a unique node name"
      )
    }
    return Effect.void
  }

  /**
   * Takes the stored state unless a command came since it was read; with
   * `say`, logs what it changed (a heartbeat's catch-up on a command whose
   * signal this node missed, or has not heard yet).
   */
  const adopt = (state: ProducerState, readAt: number, say = false) =>
    Effect.suspend(() => {
      if (control.changes !== readAt) return Effect.void
      const changes = [
        ...(state.paused !== control.paused ? [state.paused ? "paused" : "resumed"] : []),
        ...(state.limit !== control.limit ? [`scaled from ${control.limit} to ${state.limit}`] : [])
      ]
      const pausedNow = state.paused && !control.paused
      control.limit = state.limit
      control.paused = state.paused
      const apply = pausedNow ? input.pausedByRow : changes.length > 0 ? input.wake : Effect.void
      return say && changes.length > 0
        ? Effect.andThen(
          Effect.logInfo(
            `queue ${options.queue} ${changes.join(" and ")}: read back by a heartbeat, from a command not applied ` +
              "here yet"
          ),
          apply
        )
        : apply
    })

  /**
   * Registers this producer through `client`. The first registration runs on the shared pool: at
   * start-up nothing holds it yet and it has a connection open (the migration check used it), while
   * the node's own connection may still be opening, and the first claim waits for this. Later ones
   * (after a long outage) run on the node's own connection, like heartbeats.
   */
  const register = (client: SqlClient) =>
    Effect.gen(function*() {
      const readAt = control.changes
      const pauseReadAt = control.pauseChanges
      const uncountedReadAt = control.uncountedPauseChanges
      const seenAtStart = control.pauseCommandsSeen
      const wasPaused = control.paused
      const wasLimit = control.limit
      // The queue's limits first: written (config) before this node's row shows it up, or read
      // (no config) before its first claim.
      yield* options.liveness.run(limiter.load(client))
      const time = yield* now(client)
      const row = yield* options.liveness.run(registerProducer(client, options.prefix, time, {
        id: producerId,
        node: options.node,
        queue: options.queue,
        limit: control.limit,
        paused: control.paused,
        pauseCommandsSeen: control.pauseCommandsSeen,
        meta: options.meta ?? {}
      }))
      namesakesAtStart = row.namesakes
      readPauseCommands(row.pauseCommands, seenAtStart)
      // Pauses and resumes that arrived while this ran count as commands to store, unless each was a
      // signal for every node whose outcome the registration read already (its count at most the one
      // read under the queue row's lock): such a late signal would otherwise be stored for this node.
      const onlyRead = control.uncountedPauseChanges === uncountedReadAt &&
        control.highestCountApplied !== undefined && BigInt(control.highestCountApplied) <= BigInt(row.pauseCommands)
      const pauseCommand = control.pauseChanges !== pauseReadAt && !onlyRead
      const limitCommand = control.changes - control.pauseChanges !== readAt - pauseReadAt
      if (pauseCommand || limitCommand) {
        // A command arrived while registering, and its update may not have seen this row: what it set
        // wins and is stored for heartbeats to read back, and the registration's state stands for the
        // rest (a scale leaves a kept pause alone). Only what it set is stored: a command for every node
        // that updated the row since keeps the rest.
        yield* adopt({
          limit: limitCommand ? control.limit : row.limit,
          paused: pauseCommand ? control.paused : row.paused
        }, control.changes)
        yield* options.liveness.run(storeQueueState(client, options.prefix, {
          queue: options.queue,
          node: options.node,
          ...(limitCommand ? { limit: control.limit } : {}),
          ...(pauseCommand ? { paused: control.paused } : {})
        }))
      } else {
        // The stored state wins: rows left by an earlier run of this node, a pause for every node, or
        // the end of one this node missed while its row was gone (also over late signals it read).
        yield* adopt(row, control.changes)
      }
      const pausedEverywhereNow = !pauseCommand && control.paused && row.pausedEverywhere && !wasPaused
      if (pausedEverywhereNow) {
        // Said at start: an operator reading a deploy's logs would otherwise expect the queue to run.
        yield* Effect.logInfo(
          registered
            ? `queue ${options.queue} is paused: it was paused for every node while this node could not reach the ` +
              "database, which holds until it is resumed for every node"
            : `queue ${options.queue} starts paused: it was paused for every node, which holds for nodes that ` +
              "start later until it is resumed for every node"
        )
      } else if (!registered && row.inherited) {
        const changes = [
          ...(!pauseCommand && control.paused !== wasPaused ? [control.paused ? "paused" : "running"] : []),
          ...(!limitCommand && control.limit !== wasLimit ? [`with limit ${control.limit} (configured ${wasLimit})`] : [])
        ]
        if (changes.length > 0) {
          yield* Effect.logInfo(
            `queue ${options.queue} starts ${changes.join(" ")}, as the last run of node ${options.node} left it ` +
              "(what a command changed on this node, given for it or for every node, outlives a crash; a clean shutdown clears it)"
          )
        }
      }
      if (registered) {
        // Back after a long outage: what commands given meanwhile changed here (the node missed their signals).
        const changes = [
          ...(!pauseCommand && !pausedEverywhereNow && control.paused !== wasPaused ? [control.paused ? "paused" : "resumed"] : []),
          ...(!limitCommand && control.limit !== wasLimit ? [`scaled from ${wasLimit} to ${control.limit}`] : [])
        ]
        if (changes.length > 0) {
          yield* Effect.logInfo(
            `queue ${options.queue} ${changes.join(" and ")}: by a command given while this node could not reach the database`
          )
        }
      }
    })

  const beatSql = options.liveness.sql
  const heartbeat = Effect.gen(function*() {
    const sentReal = performance.now()
    if (!registered) {
      // The first registration (`registered` never goes back to false): on the pool.
      yield* register(options.sql)
    } else {
      const readAt = control.changes
      const seenAtStart = control.pauseCommandsSeen
      const state = yield* options.liveness.run(beat(beatSql, options.prefix, yield* now(beatSql), producerId))
      if (state === undefined) {
        // The row was marked dead or removed (a long outage, or a stall): its claims may have been rescued
        // meanwhile, so the jobs waiting here are not ours to start any more; those still claimed here go back.
        yield* input.giveBackWaiting
        yield* register(beatSql)
      } else {
        readPauseCommands(state.pauseCommands, seenAtStart)
        yield* adopt(state, readAt, true)
        if (limiter.adopt(state.limits)) yield* input.limitsChanged
        yield* checkNamesakes(state.namesakes)
      }
    }
    lastBeat = yield* Clock.currentTimeMillis
    lastBeatSentReal = sentReal
    if (!registered || lost) {
      if (lost) yield* Effect.logInfo("heartbeat restored; fetching again")
      registered = true
      lost = false
      yield* input.wake
    }
  })

  const checkAlive = Effect.gen(function*() {
    if (!registered || lost) return false
    const silentFor = (yield* Clock.currentTimeMillis) - lastBeat
    if (silentFor < lostAfterMillis) return true
    lost = true
    // Checked late (the process did not run meanwhile: a blocked event loop), the silence may be past rescueAfter already.
    const judged = silentFor >= rescueAfterMillis
      ? `this node may have been judged dead already (after ${rescueAfterMillis} ms) and its running job(s) rescued`
      : `this node may be judged dead after ${rescueAfterMillis} ms and its ${input.running()} running job(s) rescued`
    yield* Effect.logWarning(
      `no heartbeat for ${silentFor} ms: ${judged} and run again elsewhere; not claiming jobs until a heartbeat gets through`
    )
    return false
  })

  // After a failure, try again soon, so that the first moment the database answers again
  // refreshes the row.
  const loop = Effect.gen(function*() {
    const streak = FailureStreak.make("heartbeats get through again")
    while (true) {
      const result = yield* Effect.exit(tracked(heartbeat))
      if (result._tag === "Success") {
        yield* streak.succeeded
        const wasFailing = beatFailing
        beatFailing = false
        // Jobs waiting here start: after failed heartbeats, and after a silence without a failure (a stalled
        // process) that made them wait too (see `startable`). Usually none waits with a slot free.
        yield* input.restored.pipe(
          Effect.catchCause((cause) => Effect.logError("could not start the jobs waiting here", Cause.pretty(cause)))
        )
        // Nothing was claimed while heartbeats failed (see `startable`): claim again now.
        if (wasFailing) yield* input.wake
        yield* Effect.sleep(options.heartbeatInterval)
      } else {
        const failures = streak.failed()
        beatFailing = true
        yield* streak.warn(`heartbeat failed (${failures}x); trying again`, result.cause)
        yield* Effect.sleep(Math.min(heartbeatMillis, yield* retryDelay(failures, { baseMillis: 250, maxMillis: 2_000 })))
      }
    }
  }).pipe(Effect.annotateLogs(logs))
  const start = Effect.asVoid(
    options.heartbeatScope === undefined ? Effect.forkScoped(loop) : Effect.forkIn(loop, options.heartbeatScope)
  )

  return {
    registered: () => registered,
    startable: () =>
      !lost && !beatFailing && (!registered || (
        input.clock.currentTimeMillisUnsafe() - lastBeat < lostAfterMillis &&
        performance.now() - lastBeatSentReal < lostAfterMillis
      )),
    checkAlive,
    start,
    rememberPauseCommands
  }
}
