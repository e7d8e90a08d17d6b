/**
 * The options a crontab entry takes (`Cron.entry`): a slot's job is due at
 * its slot and unique per slot, so `scheduleIn`, `scheduledAt` and `unique`
 * are the cron's own, and a misspelt option is refused by name rather than
 * dropped.
 */
import type { EntryOptions } from "../Cron.ts"
import { closest } from "./optionKeys.ts"

/** Every option `entry` takes, so that one it does not (from JavaScript, a cast) is refused by name. */
const entryOptionKeys: { readonly [K in keyof Required<EntryOptions>]: true } = {
  queue: true,
  priority: true,
  maxAttempts: true,
  tags: true,
  meta: true,
  timeout: true,
  backoff: true,
  timezone: true,
  name: true
}

/** The job options that are the cron's own. */
const cronsOwn = ["scheduleIn", "scheduledAt", "unique"]

/** What is wrong with the options of an entry, if anything. */
export const optionProblem = (options: object): string | undefined => {
  for (const [key, value] of Object.entries(options)) {
    // An option given as undefined is no option (as `worker.job` reads it).
    if (value === undefined || Object.hasOwn(entryOptionKeys, key)) continue
    return cronsOwn.includes(key)
      ? `option "${key}" is the cron's own: a slot's job is due at its slot and unique per slot`
      : unknownOption(key)
  }
  return undefined
}

const unknownOption = (key: string): string => {
  const known = Object.keys(entryOptionKeys)
  const suggestion = closest(key, known)
  return `unknown option ${JSON.stringify(key)}${suggestion === undefined ? "" : ` (did you mean ${JSON.stringify(suggestion)}?)`}; ` +
    `known: ${known.join(", ")}`
}
