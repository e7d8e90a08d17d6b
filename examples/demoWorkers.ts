/**
 * The demo's workers: one per outcome a job can have, and the batch of jobs
 * the demo enqueues, with the final state each job is expected to reach.
 */
import { Effect, Random, Schedule, Schema } from "effect"
import { Worker } from "../src/index.ts"

class SmtpTimeout extends Schema.TaggedError<SmtpTimeout>()("SmtpTimeout", { message: Schema.String }) {}

/** Succeeds after a few milliseconds of "work". */
export const SendWelcome = Worker.make("SendWelcome", {
  args: Schema.Struct({ userId: Schema.Int }),
  queue: "mailers",
  perform: () => Effect.flatMap(Random.nextIntBetween(1, 5), (ms) => Effect.sleep(ms))
})

/** Fails its first attempt with a typed error, then succeeds (retried after 500 ms). */
export const SyncCrm = Worker.make("SyncCrm", {
  args: Schema.Struct({ accountId: Schema.Int }),
  maxAttempts: 3,
  backoff: Schedule.spaced("500 millis"),
  perform: (job) =>
    job.attempt === 1 ? Effect.fail(new SmtpTimeout({ message: "CRM did not answer" })) : Effect.sleep(2)
})

const snoozed = new Set<number>()
/** Snoozes once for a second (without using an attempt), then succeeds. */
export const PollPayment = Worker.make("PollPayment", {
  args: Schema.Struct({ paymentId: Schema.Int }),
  perform: (job) =>
    Effect.suspend(() => {
      if (snoozed.has(job.id)) return Effect.void
      snoozed.add(job.id)
      return Worker.snooze("1 second")
    })
})

/** Times out (200 ms) on the first attempt, then finishes quickly. */
export const Transcode = Worker.make("Transcode", {
  args: Schema.Struct({ videoId: Schema.Int }),
  queue: "media",
  timeout: "200 millis",
  backoff: Schedule.spaced("300 millis"),
  perform: (job) => Effect.sleep(job.attempt === 1 ? "2 seconds" : "20 millis")
})

/** Decides the job should not run after all. */
export const IssueRefund = Worker.make("IssueRefund", {
  args: Schema.Struct({ orderId: Schema.Int }),
  perform: () => Worker.cancel("refund window closed")
})

/** Runs until someone cancels it with `cancelJob`. */
export const ExportReport = Worker.make("ExportReport", {
  args: Schema.Struct({ reportId: Schema.Int }),
  queue: "media",
  perform: () => Effect.sleep("10 minutes")
})

export const workers = [SendWelcome, SyncCrm, PollPayment, Transcode, IssueRefund, ExportReport] as const

export const queues = { default: 20, mailers: 10, media: 5 } as const

/** The jobs to enqueue, and the final state each worker's jobs must reach. */
export const batch = () => {
  const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1)
  return {
    requests: [
      ...range(2_000).map((userId) => SendWelcome.job({ userId })),
      ...range(300).map((userId) => SendWelcome.job({ userId }, { scheduleIn: `${1 + (userId % 4)} seconds`, tags: ["reminder"] })),
      ...range(300).map((accountId) => SyncCrm.job({ accountId })),
      ...range(150).map((paymentId) => PollPayment.job({ paymentId })),
      ...range(40).map((videoId) => Transcode.job({ videoId })),
      ...range(50).map((orderId) => IssueRefund.job({ orderId }))
    ],
    expected: {
      SendWelcome: { completed: 2_300 },
      SyncCrm: { completed: 300 },
      PollPayment: { completed: 150 },
      Transcode: { completed: 40 },
      IssueRefund: { cancelled: 50 },
      ExportReport: { cancelled: 1 }
    } as Record<string, Record<string, number>>
  }
}
