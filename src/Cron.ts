/**
 * Periodic jobs from cron expressions, inserted by the node that holds the
 * cron lease (one at a time, among the nodes with a crontab).
 *
 * ```ts
 * Oban.layer({
 *   crontab: [
 *     Cron.entry("0 3 * * *", DailyReport, { kind: "sales" }, { timezone: "Europe/Paris" }),
 *     Cron.entry("*\/10 * * * * *", Heartbeat, {})   // six fields: with seconds
 *   ],
 *   ...
 * })
 * ```
 *
 * Each slot (an instant the expression matches) inserts one job whose
 * `unique_key` is `cron:<entry name>:<slot>`; a unique index makes a second
 * insert of the same slot a no-op, so a slot yields at most one job even when
 * leadership changes hands mid-minute and the new leader looks back over the
 * last minute. Expressions and time zones are parsed by Effect's `Cron` when
 * the layer starts; an invalid one fails the layer with `InvalidConfigError`.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as EffectCron from "effect/Cron"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { Settings } from "./Config.ts"
import { InvalidConfigError } from "./Errors.ts"
import { now } from "./ObanClock.ts"
import { encodeRequest, rowJson } from "./internal/encodeRequest.ts"
import { tracked } from "./internal/activity.ts"
import * as CronSlots from "./internal/cronSlots.ts"
import { optionProblem } from "./internal/cronOptions.ts"
import { textProblem } from "./internal/jsonText.ts"
import { runDeadline } from "./internal/periodic.ts"
import { withStatementTimeout } from "./internal/statementTimeout.ts"
import { existingKeys, insertUnique } from "./internal/sql/maintenance.ts"
import type { JobOptions, JobRequest, Worker } from "./Worker.ts"
import * as FailureStreak from "./internal/failureStreak.ts"
import { plain } from "./internal/sql/plain.ts"

/**
 * The first slot of a parsed expression after `after`, also when the clocks
 * of its time zone go forward around it.
 *
 * @since 0.1.0
 */
export const nextSlot: (cron: EffectCron.Cron, after: Date) => Date = CronSlots.nextSlot

/**
 * @since 0.1.0
 */
export const defaults = {
  /** How far back a new leader looks for slots the previous one may have missed. */
  catchUp: Duration.minutes(1),
  /** The longest sleep between checks, against clock jumps and very sparse expressions. */
  maxSleep: Duration.hours(1)
} as const

/**
 * One line of the crontab.
 *
 * @since 0.1.0
 */
export interface Entry {
  /** Identifies the entry's slots; default `<worker>:<expression>`. Keep it stable across deploys. */
  readonly name: string
  readonly expression: string
  readonly timezone: string | undefined
  readonly request: JobRequest
}

/**
 * The job options a crontab entry takes: a slot's job is due at its slot and
 * unique per slot (`cron:<name>:<slot>`), so `scheduleIn`, `scheduledAt` and
 * `unique` are the cron's own.
 *
 * @since 0.1.0
 */
export type EntryOptions = Omit<JobOptions, "scheduleIn" | "scheduledAt" | "unique"> & {
  readonly timezone?: string | undefined
  readonly name?: string | undefined
}

/**
 * A crontab entry: run `worker` with `args` at every slot of `expression`
 * (five fields, or six with seconds first), in `timezone` (default UTC).
 *
 * @since 0.1.0
 */
export const entry = <A, E, R>(
  expression: string,
  worker: Worker<string, A, E, R>,
  args: A,
  options: EntryOptions = {}
): Entry => {
  const { name, timezone, ...jobOptions } = options
  const entry: Entry = {
    name: name ?? `${worker.name}:${expression}`,
    expression,
    timezone,
    // Past the types (a cast, JavaScript), the cron's own options are still the cron's.
    request: worker.job(args, { ...jobOptions, scheduleIn: undefined, scheduledAt: undefined, unique: false })
  }
  // Such an option is refused when the crontab is parsed (a node's start), not dropped. Kept under a
  // symbol, so that a copy of the entry (`{ ...entry, name }`) keeps it, and JSON and keys do not show it.
  const problem = optionProblem(options)
  return problem === undefined ? entry : { ...entry, [entryProblem]: problem } as Entry
}

/** What is wrong with the options an entry was made with. */
const entryProblem = Symbol.for("effect-oban/Cron/entryProblem")

/**
 * An entry with its expression parsed and its job encoded.
 *
 * @since 0.1.0
 */
export interface Parsed {
  readonly entry: Entry
  readonly cron: EffectCron.Cron
  readonly rowJson: string
}

/**
 * Parses and checks a crontab: expressions, time zones, job requests, and
 * unique names.
 *
 * @since 0.1.0
 */
export const parse = (
  entries: ReadonlyArray<Entry>
): Effect.Effect<ReadonlyArray<Parsed>, InvalidConfigError> =>
  Effect.gen(function*() {
    const settings = yield* Settings
    const names = new Set<string>()
    const parsed: Array<Parsed> = []
    for (const [index, item] of entries.entries()) {
      if (names.has(item.name)) {
        return yield* new InvalidConfigError({ field: "crontab", message: `two crontab entries are named "${item.name}"` })
      }
      names.add(item.name)
      const problem = (item as Entry & { readonly [entryProblem]?: string })[entryProblem]
      if (problem !== undefined) {
        return yield* new InvalidConfigError({ field: "crontab", message: `crontab entry ${index} ("${item.name}"): ${problem}` })
      }
      const badName = typeof item.name !== "string" || item.name.length === 0
        ? "must not be empty"
        : textProblem(item.name)
      if (badName !== undefined) {
        return yield* new InvalidConfigError({ field: "crontab", message: `crontab entry ${index}: its name ${badName}` })
      }
      const cron = parseExpression(item.expression, item.timezone)
      if (
        Result.isFailure(cron) && typeof item.expression === "string" && item.expression.trim().startsWith("@") &&
        expand(item.expression) === item.expression
      ) {
        // "Invalid number of segments" says nothing to someone who wrote @reboot.
        return yield* new InvalidConfigError({
          field: "crontab",
          message: `crontab entry ${index} ("${item.name}"): ${JSON.stringify(item.expression.trim())} is no shorthand ` +
            `this crontab knows (${Object.keys(macros).join(", ")}); @reboot has no slots to keep: insert the job at start`
        })
      }
      if (Result.isFailure(cron)) {
        return yield* new InvalidConfigError({
          field: "crontab",
          message: `crontab entry ${index} ("${item.name}"): ${cron.failure.message}: ${cron.failure.input ?? ""}`
        })
      }
      if (!firesAgain(cron.success)) {
        // Effect's `next` throws for it (Feb 30): at run time that stopped every entry's slots.
        return yield* new InvalidConfigError({
          field: "crontab",
          message: `crontab entry ${index} ("${item.name}"): "${item.expression}" matches no date`
        })
      }
      const encoded = yield* encodeRequest(item.request, settings, undefined).pipe(
        Effect.mapError((error) =>
          new InvalidConfigError({ field: "crontab", message: `crontab entry ${index} ("${item.name}"): ${error.message}` })
        )
      )
      parsed.push({ entry: item, cron: cron.success, rowJson: rowJson(encoded) })
    }
    return parsed
  })

/**
 * `expression` with a shorthand (`@daily`, `@hourly`, ...) replaced by its
 * five fields; any other expression as it is.
 *
 * @since 0.1.0
 */
export const expand = (expression: string): string => {
  const trimmed = expression.trim().toLowerCase()
  return Object.hasOwn(macros, trimmed) ? macros[trimmed]! : expression
}

/**
 * Parses an entry's expression as a node does: shorthands expanded, and the
 * entry's rule for a fall-back's repeated hour.
 *
 * @since 0.1.0
 */
export const parseExpression = (
  expression: string,
  timezone: string | undefined
): Result.Result<EffectCron.Cron, EffectCron.CronParseError> => {
  const expanded = expand(expression)
  return EffectCron.parse(expanded, timezone, { onDstOverlap: overlapPolicy(expanded) })
}

/** The usual shorthands, as classic cron and Oban read them. */
const macros: Readonly<Record<string, string>> = {
  "@yearly": "0 0 1 1 *",
  "@annually": "0 0 1 1 *",
  "@monthly": "0 0 1 * *",
  "@weekly": "0 0 * * 0",
  "@daily": "0 0 * * *",
  "@midnight": "0 0 * * *",
  "@hourly": "0 * * * *"
}

/**
 * Which occurrences of a local time that a fall-back repeats run, as classic
 * cron does: an entry for fixed hours runs once (the earlier occurrence); one
 * whose hour field starts with a wildcard (every hour, or every second hour)
 * keeps running through the repeated hour, since each of its slots is a
 * different instant.
 */
const overlapPolicy = (expression: string): "earlier" | "both" => {
  const fields = expression.trim().split(/\s+/)
  const hour = fields.length === 6 ? fields[2] : fields[1]
  return hour !== undefined && hour.startsWith("*") ? "both" : "earlier"
}

/** Whether the expression has a next slot at all. */
const firesAgain = (cron: EffectCron.Cron): boolean => {
  try {
    EffectCron.next(cron, new Date())
    return true
  } catch {
    return false
  }
}

/**
 * What one run did.
 *
 * @since 0.1.0
 */
export interface RunResult {
  readonly inserted: number
  /** Slots that already had their job (inserted by an earlier leader). */
  readonly duplicates: number
}

/**
 * Inserts the job of every slot in `(from, to]` (at most the latest 100 per
 * entry).
 *
 * @since 0.1.0
 */
export const runOnce = (options: {
  readonly sql: SqlClient
  readonly prefix: string
  readonly entries: ReadonlyArray<Parsed>
  readonly from: Date
  readonly to: Date
}): Effect.Effect<RunResult, SqlError> =>
  Effect.gen(function*() {
    const sql = plain(options.sql)
    let inserted = 0
    let duplicates = 0
    for (const item of options.entries) {
      for (const slot of slotsBetween(item, options.from, options.to)) {
        const fresh = yield* insertUnique(sql, options.prefix, yield* now(sql), item.rowJson, slotKey(item, slot), {
          cron: { name: item.entry.name, slot: slot.toISOString() }
        })
        if (fresh) inserted++
        else duplicates++
      }
    }
    return { inserted, duplicates }
  })

/** The slots of `item` in `(from, to]`, at most the latest 100. */
const slotsBetween = (item: Parsed, from: Date, to: Date): ReadonlyArray<Date> => CronSlots.latestSlots(item.cron, from, to)

const slotKey = (item: Parsed, slot: Date): string => `cron:${item.entry.name}:${slot.toISOString()}`

/**
 * Where a new leader's look back over `(to - catchUp, to]` starts, per entry:
 * after the latest slot of that window whose job exists (the previous
 * leader's last), so only the slots it missed are inserted; when none has its
 * job (a first start, or no leader for the whole window), just before the
 * window's last slot, so a first start inserts one slot rather than a minute
 * of them. One query for every entry's slots.
 */
const lookBackStarts = (
  sql: SqlClient,
  prefix: string,
  entries: ReadonlyArray<Parsed>,
  to: Date
): Effect.Effect<ReadonlyArray<Date>, SqlError> => {
  const windowStart = new Date(to.getTime() - Duration.toMillis(defaults.catchUp))
  const slots = entries.map((item) => slotsBetween(item, windowStart, to))
  const keys = entries.flatMap((item, index) => slots[index]!.map((slot) => slotKey(item, slot)))
  return Effect.map(existingKeys(sql, prefix, keys), (existing) =>
    entries.map((item, index) => {
      const own = slots[index]!
      if (own.length === 0) return windowStart
      const latest = own.findLast((slot) => existing.has(slotKey(item, slot)))
      return latest ?? new Date(own[own.length - 1]!.getTime() - 1)
    }))
}

/** "Now" by the library's clock: the database's, or Effect's in tests. */
export const currentTime = (sql: SqlClient): Effect.Effect<Date, SqlError> =>
  Effect.flatMap(now(sql), (fragment) =>
    Effect.map(sql<{ readonly now: Date }>`SELECT ${fragment} AS now`, (rows) => rows[0]!.now))

/**
 * Inserts cron jobs while `isLeader` holds. On becoming leader it looks back
 * `catchUp` for the slots after the last one that has its job (only the
 * latest, when none has); then it sleeps until the next slot of any entry.
 *
 * @since 0.1.0
 */
export const loop = (options: {
  readonly sql: SqlClient
  readonly prefix: string
  readonly entries: ReadonlyArray<Parsed>
  readonly isLeader: Effect.Effect<boolean>
  /**
   * How far back a late round inserts the slots it missed: the pruner's
   * `maxAge`. A slot younger than that still has its job if any node inserted
   * it, so inserting it again is a no-op; an older one may have run and been
   * pruned, and would run twice. Default: no bound (at most the latest 100
   * slots per entry), for a node that prunes nothing.
   */
  readonly maxAge?: Duration.Duration | undefined
}): Effect.Effect<never> =>
  Effect.gen(function*() {
    let last: Date | undefined
    const maxAgeMillis = options.maxAge === undefined ? undefined : Duration.toMillis(options.maxAge)
    const sql = plain(options.sql)
    const streak = FailureStreak.make("cron rounds get through again")
    while (true) {
      const wait = yield* Effect.gen(function*() {
        if (!(yield* options.isLeader)) {
          last = undefined
          return 1_000
        }
        const startedAt = yield* Clock.currentTimeMillis
        const to = yield* currentTime(sql)
        if (last === undefined) {
          const starts = yield* lookBackStarts(sql, options.prefix, options.entries, to)
          for (const [index, item] of options.entries.entries()) {
            yield* runOnce({ ...options, entries: [item], from: starts[index]!, to })
          }
        } else {
          // A round that comes late (a paused VM, a stopped process, rounds that failed) inserts the
          // slots it missed, back to `maxAge`: another holder may have run older ones meanwhile.
          const from = maxAgeMillis === undefined ? last : new Date(Math.max(last.getTime(), to.getTime() - maxAgeMillis))
          yield* runOnce({ ...options, from, to })
        }
        last = to
        // Only a round that reached the database ends a run of failures (one that found this node no leader did not).
        yield* streak.succeeded
        const next = Math.min(...options.entries.map((item) => nextSlot(item.cron, to).getTime()))
        // The sleep starts now, not at `to`: the time the run took (which a test clock may have
        // moved by a lot) comes off it, so the next slot is not missed by as much. It ends on the
        // slot itself, so a test clock moved exactly onto a slot runs it; when a timer fires a
        // little early or the database's reading comes back from just before the slot, the run
        // finds it not yet due and sleeps the difference (one more round trip, no more).
        const spent = (yield* Clock.currentTimeMillis) - startedAt
        return Math.min(Duration.toMillis(defaults.maxSleep), Math.max(1, next - to.getTime() - spent))
      }).pipe(
        // As every maintenance loop: a connection that stopped answering fails the round, not the loop.
        // A round cut short runs again from the same slot (each slot's job is inserted once).
        withStatementTimeout({ timeout: runDeadline, operation: "Cron" }),
        Effect.catchCause((cause) =>
          Effect.suspend(() => {
            streak.failed()
            return Effect.as(streak.warn("cron failed; will try again", cause), 1_000)
          })
        ),
        tracked
      )
      yield* Effect.sleep(wait)
    }
  }).pipe(Effect.annotateLogs({ component: "Cron" }))
