/**
 * Settings shared by everything that talks to effect-oban's tables: the schema
 * prefix and the limits checked before an insert.
 *
 * Say the prefix once per application, with `ObanConfig.layer({ prefix })`:
 * `Oban.insert`, `Migrations.run` and `Oban.layer` all read it from there.
 * Without it, everything uses the `public` schema. `Oban.layer` provides the
 * settings to its own jobs (so a worker's `Oban.insert` writes to the node's
 * schema) and to the rest of the program.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { InvalidConfigError, InvalidPrefixError } from "./Errors.ts"
import { describe } from "./internal/jsonText.ts"

/**
 * @since 0.1.0
 */
export interface SettingsShape {
  /** The PostgreSQL schema that holds the tables. Default `public`. */
  readonly prefix: string
  /**
   * The largest `args` accepted, in bytes of JSON text (a number counted as long as PostgreSQL writes it
   * back: `1e+300` is 301). Default 1 MiB, at most 8 MiB.
   */
  readonly maxArgsBytes: number
}

/**
 * @since 0.1.0
 */
export const defaultSettings: SettingsShape = {
  prefix: "public",
  maxArgsBytes: 1024 * 1024
}

/**
 * The largest `maxArgsBytes` allowed: a job's row must stay inside the 16 MiB
 * the driver reads in one message, or no fetch of its queue can read it. The
 * args come back as PostgreSQL writes `jsonb` as text: a space after each `,`
 * and `:` (up to half as long again as compact JSON) and numbers without an
 * exponent (counted so by the limit, see `jsonText.ts`); beside them up to 20
 * errors entries of at most 128 KiB as stored, and 64 KiB of meta.
 */
const maxArgsBytesCeiling = 8 * 1024 * 1024

/** Room left in a 63-byte channel name for `<prefix>.oban_<channel>`. */
const maxPrefixLength = 40
const plainIdentifier = /^[a-z_][a-z0-9_]*$/

/** A prefix as the error shows it: whole, quoted, unless it is too long to read (then its start). */
const shownPrefix = (prefix: string): string =>
  prefix.length <= 80 ? JSON.stringify(prefix) : `${JSON.stringify(prefix.slice(0, 60))}...`

/**
 * Checks that `prefix` is a plain lowercase identifier that needs no quoting
 * and leaves room for the notification channel names.
 *
 * @since 0.1.0
 */
export const validatePrefix = (prefix: string): Effect.Effect<string, InvalidPrefixError> => {
  const refuse = (rule: string) =>
    Effect.fail(
      new InvalidPrefixError({
        // The error's own field is a string: a value of another type (untyped JavaScript) is described.
        prefix: typeof prefix === "string" ? prefix : describe(prefix),
        message: `prefix ${typeof prefix === "string" ? shownPrefix(prefix) : describe(prefix)} ${rule}`
      })
    )
  if (typeof prefix !== "string") return refuse("must be a string")
  if (prefix.length === 0 || prefix.length > maxPrefixLength) {
    return refuse(`must be 1 to ${maxPrefixLength} characters long${prefix.length === 0 ? "" : ` (it has ${prefix.length})`}`)
  }
  if (!plainIdentifier.test(prefix)) {
    return refuse("must be a plain identifier: lowercase letters, digits and _, not starting with a digit")
  }
  if (prefix.startsWith("pg_")) return refuse("must not start with pg_ (reserved)")
  return Effect.succeed(prefix)
}

/**
 * The settings in force. Defaults to the `public` schema and a 1 MiB args limit.
 *
 * @since 0.1.0
 */
export const Settings: Context.Reference<SettingsShape> = Context.Reference<SettingsShape>("effect-oban/Settings", {
  defaultValue: () => defaultSettings
})

/**
 * Provides validated settings; an invalid prefix or limit fails the layer.
 *
 * @since 0.1.0
 */
export const layer = (
  options: Partial<SettingsShape>
): Layer.Layer<never, InvalidPrefixError | InvalidConfigError> => Layer.effect(Settings, make(options))

/**
 * Validates settings, filling in defaults.
 *
 * @since 0.1.0
 */
export const make = (
  options: Partial<SettingsShape>
): Effect.Effect<SettingsShape, InvalidPrefixError | InvalidConfigError> =>
  Effect.gen(function*() {
    const prefix = yield* validatePrefix(options.prefix ?? defaultSettings.prefix)
    const maxArgsBytes = options.maxArgsBytes ?? defaultSettings.maxArgsBytes
    if (!Number.isSafeInteger(maxArgsBytes) || maxArgsBytes < 2 || maxArgsBytes > maxArgsBytesCeiling) {
      return yield* new InvalidConfigError({
        field: "maxArgsBytes",
        message: `maxArgsBytes must be an integer from 2 to ${maxArgsBytesCeiling} (8 MiB: a larger job's row could not be read back), got ${maxArgsBytes}`
      })
    }
    return { prefix, maxArgsBytes }
  })

/**
 * What `resolve` takes: settings given as options to one component.
 *
 * @since 0.1.0
 */
export interface Overrides {
  readonly prefix?: string | undefined
  readonly maxArgsBytes?: number | undefined
}

/**
 * The settings for a component that also takes them as options
 * (`Oban.layer`, `Migrations`, the testing kit): each option, else the
 * `Settings` provided to the caller (e.g. by `ObanConfig.layer`), else the
 * default. A `prefix` option that differs from a provided `Settings` prefix
 * fails with `InvalidConfigError` (field `prefix`) instead of silently
 * picking one of them: the jobs would go to one schema and the inserts to
 * another. A `maxArgsBytes` option simply wins.
 *
 * @since 0.1.0
 */
export const resolve = (
  options: Overrides
): Effect.Effect<SettingsShape, InvalidPrefixError | InvalidConfigError> =>
  Effect.flatMap(Effect.context<never>(), (context) => {
    // A raw lookup: the `public` default must not count as a provided prefix.
    const provided = Context.getOrUndefined(context, Settings)
    if (provided === undefined) return make(defined(options))
    if (options.prefix !== undefined && options.prefix !== provided.prefix) {
      // A prefix that is no valid prefix at all is refused as such, before it is compared.
      return Effect.andThen(validatePrefix(options.prefix), Effect.fail(
        new InvalidConfigError({
          field: "prefix",
          message: `prefix "${options.prefix}" contradicts the prefix "${provided.prefix}" provided by ` +
            `ObanConfig.layer: give the prefix once, in ObanConfig.layer, and drop the prefix option`
        })
      ))
    }
    return make({ prefix: provided.prefix, maxArgsBytes: options.maxArgsBytes ?? provided.maxArgsBytes })
  })

const defined = (options: Overrides): Partial<SettingsShape> => ({
  ...(options.prefix === undefined ? {} : { prefix: options.prefix }),
  ...(options.maxArgsBytes === undefined ? {} : { maxArgsBytes: options.maxArgsBytes })
})

/**
 * The notification channel for `name` in the schema `prefix`.
 *
 * @since 0.1.0
 */
export const channel = (prefix: string, name: "insert" | "signal" | "leader"): string => `${prefix}.oban_${name}`
