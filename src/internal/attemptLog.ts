/**
 * The log line a node writes for an attempt that did not complete: a
 * warning for a failure (with the retry it gets, or why it gets none) and
 * for args that do not decode, an info line for a worker's own discard.
 * Completions, snoozes, cancels and jobs given back at shutdown log nothing
 * here. The line carries the job's annotations; the full message and cause
 * stay in the job's `errors`.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { Job } from "../Job.ts"
import type { AckRow } from "./sql/acks.ts"
import { firstLine, maxErrorTextBytes, wasCut } from "./errorText.ts"

/** How much of an error message a log line shows; the job's `errors` keep up to 64 KiB. */
export const loggedMessageLength = 500

/** The first line of `message` (as stored: cut to 64 KiB), cut to `loggedMessageLength` characters. */
export const shortMessage = (message: string): string => {
  const cut = firstLine(message, loggedMessageLength)
  if (cut === message) return cut
  return wasCut(message)
    ? `${cut} (the job's errors keep its first ${maxErrorTextBytes / 1024} KiB)`
    : `${cut} (the whole text is in the job's errors)`
}

/** The line for `row`, the outcome of an attempt of `job`, or undefined when it logs none. */
export const attemptLine = (
  job: Job,
  row: AckRow
): { readonly level: "Warn" | "Info"; readonly outcome: "failed" | "discarded"; readonly text: string } | undefined => {
  const error = row.error
  if (error === null) return undefined
  const what = `job ${job.id} (${job.worker}) attempt ${row.attempt} of ${job.maxAttempts}`
  const message = shortMessage(error.message)
  switch (row.state) {
    case "retryable": {
      const delay = row.delay_ms === null || row.delay_ms <= 0
        ? " at once"
        : ` in ${Duration.format(Duration.millis(Math.round(row.delay_ms)))}`
      return { level: "Warn", outcome: "failed", text: `${what} failed, will retry${delay}: ${message}` }
    }
    case "discarded":
      return error.kind === "discarded"
        ? { level: "Info", outcome: "discarded", text: `${what} discarded by its worker: ${message}` }
        // Not the schema's message: it usually quotes the args, which a log should not carry.
        : error.kind === "decode"
        ? { level: "Warn", outcome: "discarded", text: `${what} discarded: its args do not decode (the job's errors say why)` }
        : row.attempt >= job.maxAttempts
        ? { level: "Warn", outcome: "failed", text: `${what} failed, no attempts left, discarded: ${message}` }
        : {
          level: "Warn",
          outcome: "failed",
          text: `${what} failed, not retryable (its worker's retryable said no), discarded: ${message}`
        }
    default:
      return undefined
  }
}

/**
 * Logs `attemptLine`, annotated with the job and with `outcome` (`failed` or
 * `discarded`, as the job's events name it: a logger can pick these lines
 * out by it), or does nothing.
 */
export const logAttempt = (job: Job, row: AckRow): Effect.Effect<void> => {
  const line = attemptLine(job, row)
  if (line === undefined) return Effect.void
  const log = line.level === "Warn" ? Effect.logWarning(line.text) : Effect.logInfo(line.text)
  return Effect.annotateLogs(log, {
    jobId: job.id,
    worker: job.worker,
    queue: job.queue,
    attempt: row.attempt,
    outcome: line.outcome
  })
}
