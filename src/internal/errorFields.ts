/**
 * The data of an error that has no message of its own, for its errors entry:
 * a tagged error such as `Data.TaggedError("Timeout")<{ host }>` says why it
 * failed only in its fields. Used where a node records a failure and where a
 * thread worker's failure is sent to its node.
 */

/** Keys a failure shows otherwise (its tag and message), or that hold no data of the error's own. */
const shownOtherwise = new Set(["_tag", "message", "stack", "cause", "name"])

/**
 * The JSON of an error's own fields (`{"host":"db-2"}`), or undefined when it
 * has none or they cannot be written (a cycle, a getter that throws): a tagged
 * error without a message whose data is in its fields
 * (`Data.TaggedError("Timeout")<{ host }>`) would otherwise leave only its tag
 * in the job's errors.
 */
export const errorFields = (error: object): string | undefined => {
  try {
    const fields: Record<string, unknown> = {}
    let count = 0
    for (const key of Object.keys(error)) {
      if (shownOtherwise.has(key)) continue
      fields[key] = (error as Record<string, unknown>)[key]
      count++
    }
    return count === 0
      ? undefined
      : JSON.stringify(fields, (_, value) => typeof value === "bigint" ? value.toString() : value)
  } catch {
    return undefined
  }
}
