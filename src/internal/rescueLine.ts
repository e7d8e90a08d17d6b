/** The rescuer's log line. */

/** What a rescue did, by how each job went on. */
export interface RescueCounts {
  readonly rescued: number
  readonly discarded: number
  readonly cancelled: number
}

/**
 * The log line of a rescue: every job it took was orphaned, and each went on as its row allowed (a line
 * that said `rescued 0 ..., cancelled 1` read as if the cancelled job had not been rescued).
 */
export const rescueLine = (result: RescueCounts): string => {
  const parts = [
    result.rescued > 0 ? `${result.rescued} to run again` : "",
    result.discarded > 0 ? `${result.discarded} discarded (out of attempts)` : "",
    result.cancelled > 0 ? `${result.cancelled} cancelled (their cancel was requested)` : ""
  ].filter((part) => part !== "")
  return `rescued ${result.rescued + result.discarded + result.cancelled} orphaned job(s): ${parts.join(", ")}`
}
