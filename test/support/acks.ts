/** Outcome rows for tests that call the acker or `ackJobs` directly. */
import type { Job } from "../../src/Job.ts"
import type { AckRow } from "../../src/internal/sql/acks.ts"

/** The outcome `state` of `job`'s current attempt, under the claim it runs under. */
export const ackOf = (job: Job, state: AckRow["state"], extra: Partial<AckRow> = {}): AckRow => ({
  id: job.id,
  attempt: job.attempt,
  claim: job.attemptedBy?.[2] ?? "",
  state,
  delay_ms: null,
  give_back: false,
  error: null,
  ...extra
})
