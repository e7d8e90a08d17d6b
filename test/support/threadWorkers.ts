/**
 * Workers that run on the node's thread pool in test/threads.test.ts. Each
 * thread imports this module by URL, so it must not start anything at import.
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { createHash } from "node:crypto"
import { writeFileSync } from "node:fs"
import { isMainThread, threadId } from "node:worker_threads"
import * as Worker from "../../src/Worker.ts"

export const queue = "threads"

const hashRounds = (seed: string, rounds: number): string => {
  let digest = Buffer.from(seed)
  for (let i = 0; i < rounds; i++) digest = createHash("sha256").update(digest).digest()
  return digest.toString("hex")
}

/** Hashes; its result says which process and thread ran it (thread 0 is a process's main thread). */
export const Hash = Worker.make("ThreadHash", {
  args: Schema.Struct({ seed: Schema.String, rounds: Schema.Int }),
  result: Schema.Struct({ digest: Schema.String, pid: Schema.Int, threadId: Schema.Int, at: Schema.Date }),
  queue,
  threads: { module: import.meta.url },
  perform: (job) =>
    Effect.sync(() => ({ digest: hashRounds(job.args.seed, job.args.rounds), pid: process.pid, threadId, at: new Date(0) }))
})

/** Succeeds with a value its result schema refuses (not an integer): the attempt fails as on the main thread. */
export const BadResult = Worker.make("ThreadBadResult", {
  args: Schema.Struct({}),
  result: Schema.Struct({ n: Schema.Int }),
  queue,
  maxAttempts: 2,
  threads: { module: import.meta.url },
  perform: () => Effect.succeed({ n: 1.5 })
})

export class MailError extends Schema.TaggedError<MailError>()("MailError", { message: Schema.String }) {}
export class BadAddress extends Schema.TaggedError<BadAddress>()("BadAddress", { message: Schema.String }) {}
/** A tagged error whose data is in its fields, with no message. */
export class MailboxFull extends Data.TaggedError("MailboxFull")<{ readonly mailbox: string }> {}

/** Fails with a typed error that its `errors` schema carries across, so `retryable` sees it. */
export const Mailer = Worker.make("ThreadMailer", {
  args: Schema.Struct({ fatal: Schema.Boolean }),
  errors: Schema.Union([MailError, BadAddress]),
  retryable: (error) => error._tag !== "BadAddress",
  queue,
  maxAttempts: 3,
  threads: { module: import.meta.url },
  perform: (job) =>
    job.args.fatal
      ? Effect.fail(new BadAddress({ message: "no such mailbox" }))
      : Effect.fail(new MailError({ message: "smtp said no" }))
})

/** Ends each other way a worker can end; its failure has no schema, so only its tag and message cross. */
export const Decides = Worker.make("ThreadDecides", {
  args: Schema.Struct({ what: Schema.Literals(["fail", "fatal", "fields", "snooze", "cancel", "discard", "die"]) }),
  queue,
  maxAttempts: 3,
  threads: { module: import.meta.url },
  perform: (
    job
  ): Effect.Effect<void, MailError | BadAddress | MailboxFull | Worker.Snooze | Worker.Cancel | Worker.Discard> => {
    switch (job.args.what) {
      case "fields":
        return Effect.fail(new MailboxFull({ mailbox: "ops@example.com" }))
      case "fail":
        return Effect.fail(new MailError({ message: "smtp said no" }))
      case "fatal":
        return Effect.fail(new BadAddress({ message: "no such mailbox" }))
      case "snooze":
        return Worker.snooze("30 seconds")
      case "cancel":
        return Worker.cancel("not needed")
      case "discard":
        return Worker.discard("bad input")
      case "die":
        return Effect.die(new Error("a defect in the thread"))
    }
  },
  retryable: (error) => error._tag !== "BadAddress"
})

/**
 * Spins for `millis` without ever yielding: only terminating its thread stops it. With `marker`, it
 * first creates that file, so a test can tell that the attempt has started on its thread.
 */
export const Busy = Worker.make("ThreadBusy", {
  args: Schema.Struct({ millis: Schema.Int, marker: Schema.optional(Schema.String) }),
  queue,
  maxAttempts: 2,
  threads: { module: import.meta.url },
  perform: (job) =>
    Effect.sync(() => {
      if (job.args.marker !== undefined) writeFileSync(job.args.marker, "")
      const end = Date.now() + job.args.millis
      while (Date.now() < end) { /* spin */ }
    })
})

/**
 * Crashes its thread: an uncaught exception outside any fiber, or a heap that outgrows its limit;
 * or, in a child process only (it would kill a thread's whole process), a SIGKILL of its own.
 */
export const Crash = Worker.make("ThreadCrash", {
  args: Schema.Struct({ how: Schema.Literals(["throw", "oom", "sigkill"]) }),
  queue,
  maxAttempts: 2,
  threads: { module: import.meta.url },
  perform: (job) =>
    job.args.how === "sigkill"
      ? Effect.sync(() => {
        if (isMainThread && process.send !== undefined) process.kill(process.pid, "SIGKILL")
      })
      : job.args.how === "throw"
      ? Effect.callback<void>(() => {
        setTimeout(() => {
          throw new Error("boom outside the fiber")
        }, 1)
      })
      : Effect.sync(() => {
        const hoard: Array<Array<number>> = []
        for (;;) hoard.push(new Array(1e6).fill(1))
      })
})

/** Says whether test/support/preload.ts was preloaded in the process (or thread) that ran it. */
export const Preloaded = Worker.make("ThreadPreloaded", {
  args: Schema.Struct({}),
  result: Schema.Struct({ preloaded: Schema.Boolean, pid: Schema.Int }),
  queue,
  maxAttempts: 1,
  threads: { module: import.meta.url },
  perform: () =>
    Effect.sync(() => ({ preloaded: (globalThis as { obanPreloaded?: boolean }).obanPreloaded === true, pid: process.pid }))
})
