/**
 * Cluster-wide limits of a queue: the shapes users write (in `Oban.layer`'s
 * queue config and in `setQueueLimits`), their validation, and the form a
 * node keeps and the database stores (`oban_queues`).
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import { InvalidConfigError } from "../Errors.ts"

/**
 * What divides a queue into partitions, each with its own limit: the job's
 * worker, or the value of one top-level key of its args (jobs without the
 * key, with a null value or with "", share one partition; values compare
 * as text, so 1 and "1" are one partition).
 */
export type Partition = { readonly by: "worker" } | { readonly by: "args"; readonly key: string }

/** A rate limit as written: at most `limit` jobs started per `period`, optionally per partition. */
export interface RateInput {
  readonly limit: number
  readonly period: Duration.Input
  readonly partition?: Partition | undefined
}

/**
 * The cluster-wide limits of a queue as written. `global`: at most this many
 * jobs of the queue execute at once across all nodes (per partition when
 * `partition` is given). `rate`: at most `rate.limit` jobs start per fixed
 * window of `rate.period`.
 */
export interface LimitsInput {
  readonly global?: number | undefined
  readonly partition?: Partition | undefined
  readonly rate?: RateInput | undefined
}

/** The limits in force: what `oban_queues` stores. Nothing set means an unlimited queue. */
export interface QueueLimits {
  readonly global: number | undefined
  readonly partition: Partition | undefined
  readonly rate: {
    readonly limit: number
    readonly periodMillis: number
    readonly partition: Partition | undefined
  } | undefined
}

export const unlimited: QueueLimits = { global: undefined, partition: undefined, rate: undefined }

/** Whether claims of the queue must go through the queue's row lock. */
export const isLimited = (limits: QueueLimits): boolean => limits.global !== undefined || limits.rate !== undefined

/** Whether the global limit or the rate applies per partition. */
export const isPartitioned = (limits: QueueLimits): boolean =>
  limits.partition !== undefined || limits.rate?.partition !== undefined

/** Whether a queue's config says anything about cluster-wide limits (then it is written at start). */
export const hasLimitFields = (input: LimitsInput): boolean =>
  input.global !== undefined || input.partition !== undefined || input.rate !== undefined

const maxLimit = 1_000_000

const fail = (field: string, message: string) => Effect.fail(new InvalidConfigError({ field, message }))

const count = (field: string, value: unknown): Effect.Effect<number | undefined, InvalidConfigError> =>
  value === undefined
    ? Effect.succeed(undefined)
    : Number.isSafeInteger(value) && (value as number) >= 1 && (value as number) <= maxLimit
    ? Effect.succeed(value as number)
    : fail(field, `${field} must be an integer from 1 to ${maxLimit}, got ${String(value)}`)

const partition = (field: string, value: unknown): Effect.Effect<Partition | undefined, InvalidConfigError> => {
  if (value === undefined) return Effect.succeed(undefined)
  if (Predicate.hasProperty(value, "by")) {
    if (value.by === "worker") return Effect.succeed({ by: "worker" })
    if (
      value.by === "args" && Predicate.hasProperty(value, "key") && typeof value.key === "string" &&
      value.key.length >= 1 && value.key.length <= 255
    ) {
      return Effect.succeed({ by: "args", key: value.key })
    }
  }
  return fail(field, `${field} must be { by: "worker" } or { by: "args", key: "<args key>" }, got ${JSON.stringify(value)}`)
}

const period = (field: string, value: unknown): Effect.Effect<number, InvalidConfigError> => {
  const parsed = Duration.fromInput(value as Duration.Input)
  if (Option.isNone(parsed) || !Duration.isFinite(parsed.value)) {
    return fail(field, `${field} must be a finite duration, got ${String(value)}`)
  }
  const millis = Math.round(Duration.toMillis(parsed.value))
  return millis >= 1 && millis <= 366 * 24 * 3_600_000
    ? Effect.succeed(millis)
    : fail(field, `${field} must be from 1 millisecond to 366 days, got ${String(value)}`)
}

/** Validates limits written by a user; `field` names where they came from (e.g. `queues.mailers`). */
export const resolveLimits = (field: string, input: LimitsInput): Effect.Effect<QueueLimits, InvalidConfigError> =>
  Effect.gen(function*() {
    const global = yield* count(`${field}.global`, input.global)
    const byPartition = yield* partition(`${field}.partition`, input.partition)
    if (byPartition !== undefined && global === undefined) {
      return yield* fail(`${field}.partition`, `${field}.partition needs ${field}.global: the limit of each partition`)
    }
    if (input.rate === undefined) return { global, partition: byPartition, rate: undefined }
    if (!Predicate.isObject(input.rate)) return yield* fail(`${field}.rate`, `${field}.rate must be { limit, period }`)
    const limit = yield* count(`${field}.rate.limit`, input.rate.limit)
    if (limit === undefined) return yield* fail(`${field}.rate.limit`, `${field}.rate.limit is required`)
    return {
      global,
      partition: byPartition,
      rate: {
        limit,
        periodMillis: yield* period(`${field}.rate.period`, input.rate.period),
        partition: yield* partition(`${field}.rate.partition`, input.rate.partition)
      }
    }
  })

/** The limits as `oban_queues` returns them (see `sql/queues.ts`), or none for a queue without a row. */
export interface LimitsRow {
  readonly global: number | null
  readonly partition: Partition | null
  readonly rateLimit: number | null
  readonly ratePeriodMs: number | null
  readonly ratePartition: Partition | null
}

export const fromRow = (row: LimitsRow | null | undefined): QueueLimits =>
  row === null || row === undefined ? unlimited : {
    global: row.global ?? undefined,
    partition: row.partition ?? undefined,
    rate: row.rateLimit === null || row.ratePeriodMs === null ? undefined : {
      limit: row.rateLimit,
      periodMillis: row.ratePeriodMs,
      partition: row.ratePartition ?? undefined
    }
  }

const partitionText = (partition: Partition | undefined): string =>
  partition === undefined ? "" : partition.by === "worker" ? " per worker" : ` per args.${partition.key}`

/** The limits in a few words, for a table: `global 1 per args.accountId; rate 100 per 1s`, or `-` for none. */
export const limitsText = (limits: QueueLimits): string => {
  const parts = [
    ...(limits.global === undefined ? [] : [`global ${limits.global}${partitionText(limits.partition)}`]),
    ...(limits.rate === undefined ? [] : [
      `rate ${limits.rate.limit} per ${Duration.format(Duration.millis(limits.rate.periodMillis))}${partitionText(limits.rate.partition)}`
    ])
  ]
  return parts.length === 0 ? "-" : parts.join("; ")
}

const samePartition = (a: Partition | undefined, b: Partition | undefined): boolean =>
  a?.by === b?.by && (a?.by !== "args" || a.key === (b as { readonly key: string }).key)

export const sameLimits = (a: QueueLimits, b: QueueLimits): boolean =>
  a.global === b.global && samePartition(a.partition, b.partition) &&
  a.rate?.limit === b.rate?.limit && a.rate?.periodMillis === b.rate?.periodMillis &&
  samePartition(a.rate?.partition, b.rate?.partition)
