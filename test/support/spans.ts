/**
 * Intervals of job runs recorded in a side table (a row when a perform starts,
 * its end when it ends), and what tests check on them: how many ran at once.
 */

export interface Span {
  readonly account: string
  /** Milliseconds since the epoch (database clock). */
  readonly start: number
  readonly end: number
}

/** The most spans that ran at the same moment (an end at the same instant as a start does not overlap it). */
export const maxOverlap = (spans: ReadonlyArray<Span>): number => {
  const events = spans.flatMap((span) => [[span.start, 1] as const, [span.end, -1] as const])
  // Ends before starts at the same instant.
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1])
  let now = 0
  let most = 0
  for (const [, delta] of events) {
    now += delta
    most = Math.max(most, now)
  }
  return most
}

/** Whether two spans that satisfy `pair` ran at the same moment. */
export const overlapsWithin = (spans: ReadonlyArray<Span>, pair: (a: Span, b: Span) => boolean): boolean =>
  spans.some((a) => spans.some((b) => a !== b && pair(a, b) && a.start < b.end && b.start < a.end))
