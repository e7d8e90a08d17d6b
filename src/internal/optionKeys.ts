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
  const unknown = Object.keys(value).find((key) => !known.includes(key))
  if (unknown === undefined) return Effect.void
  const suggestion = closest(unknown, known)
  const where = field === "" ? "" : ` in ${field}`
  return Effect.fail(
    new InvalidConfigError({
      field: field === "" ? unknown : field,
      message: `unknown option ${JSON.stringify(unknown)}${where}${
        suggestion === undefined ? "" : ` (did you mean ${JSON.stringify(suggestion)}?)`
      }; known: ${known.join(", ")}`
    })
  )
}
