/**
 * Names an option no one reads: `Oban.layer({ qeueus: ... })` from
 * JavaScript, or options built from JSON, would otherwise start a node that
 * quietly ignores what was meant (TypeScript catches it only in an object
 * literal).
 */
import * as Effect from "effect/Effect"
import { InvalidConfigError } from "../Errors.ts"

/** The edit distance of two short names (insertions, deletions, substitutions). */
export const distance = (a: string, b: string): number => {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    previous = current
  }
  return previous[b.length]!
}

/** The known name `key` was most likely meant as, if one is close enough. */
export const closest = (key: string, known: ReadonlyArray<string>): string | undefined => {
  let best: string | undefined
  let bestDistance = Math.max(2, Math.floor(key.length / 3)) + 1
  for (const name of known) {
    const d = distance(key.toLowerCase(), name.toLowerCase())
    if (d < bestDistance) {
      best = name
      bestDistance = d
    }
  }
  return best
}

/**
 * The first key of `value` that is not in `known` and holds something (a key
 * set to `undefined` gives nothing, as an absent one), with a message that
 * names it, where (`in <where>`, unless empty), and the known key it is
 * closest to; undefined when every key is known.
 */
export const unknownKey = (
  value: object,
  known: ReadonlyArray<string>,
  where: string
): { readonly key: string; readonly meant: string | undefined; readonly message: string } | undefined => {
  let key: string | undefined
  // A plain loop: `worker.job` runs this for every job given options.
  for (const name in value) {
    if (Object.hasOwn(value, name) && !known.includes(name) && (value as Record<string, unknown>)[name] !== undefined) {
      key = name
      break
    }
  }
  if (key === undefined) return undefined
  const meant = closest(key, known)
  return {
    key,
    meant,
    message: `unknown option ${JSON.stringify(key)}${where === "" ? "" : ` in ${where}`}${
      meant === undefined ? "" : ` (did you mean ${JSON.stringify(meant)}?)`
    }; known: ${known.join(", ")}`
  }
}

/**
 * Fails with `InvalidConfigError` on `field` when `value` (an object, or
 * nothing) has a key that is not in `known`, naming the key and the known
 * one it is closest to.
 */
export const checkKeys = (
  field: string,
  value: unknown,
  known: ReadonlyArray<string>
): Effect.Effect<void, InvalidConfigError> => {
  if (value === undefined || value === null || typeof value !== "object" || Array.isArray(value)) return Effect.void
  const unknown = unknownKey(value, known, field)
  return unknown === undefined
    ? Effect.void
    : Effect.fail(new InvalidConfigError({ field: field === "" ? unknown.key : field, message: unknown.message }))
}
