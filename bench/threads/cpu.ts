/**
 * Workers of `npm run bench:threads` (bench/threads.ts): the same CPU-bound
 * hash on the main thread and on the node's thread pool, and a no-op "ping"
 * whose args carry its insert time. Each thread imports this module by URL,
 * so it must not start anything at import.
 */
import { Effect, Schema } from "effect"
import { createHash } from "node:crypto"
import * as Worker from "../../src/Worker.ts"
import { epochMillis } from "../workers.ts"

/**
 * How a job hashes. `chained`: each round digests the last round's digest, a
 * new hash object and buffer per round (about 1 µs a round), so V8's garbage
 * collector works alongside, on helper threads of its own: the loop uses
 * about 1.1 cores, not 1. `streaming`: one hash object fed the same 64-byte
 * block each round, nothing allocated, exactly one core.
 */
export type HashKind = "chained" | "streaming"

/** What each CPU-bound job does: `rounds` rounds of `kind`. */
export interface HashWork {
  readonly kind: HashKind
  readonly rounds: number
}

/** `rounds` rounds of SHA-256 of `seed`, hashed as `kind` says. */
export const hashWork = (kind: HashKind, seed: string, rounds: number): string => {
  if (kind === "streaming") {
    const hash = createHash("sha256")
    const block = Buffer.alloc(64, seed)
    for (let i = 0; i < rounds; i++) hash.update(block)
    return hash.digest("hex")
  }
  let digest = Buffer.from(seed)
  for (let i = 0; i < rounds; i++) digest = createHash("sha256").update(digest).digest()
  return digest.toString("hex")
}

export const cpuQueue = "cpu"
export const pingQueue = "ping"

const HashArgs = Schema.Struct({ seed: Schema.String, rounds: Schema.Int, kind: Schema.Literals(["chained", "streaming"]) })

/** About 50 ms of SHA-256 (the rounds are calibrated by the benchmark), on the node's main thread. */
export const CpuMain = Worker.make("BenchCpuMain", {
  args: HashArgs,
  queue: cpuQueue,
  perform: (job) => Effect.sync(() => void hashWork(job.args.kind, job.args.seed, job.args.rounds))
})

/** The same hashing on the node's pool of threads. */
export const CpuThread = Worker.make("BenchCpuThread", {
  args: HashArgs,
  queue: cpuQueue,
  threads: { module: import.meta.url },
  perform: (job) => Effect.sync(() => void hashWork(job.args.kind, job.args.seed, job.args.rounds))
})

/** A no-op whose args carry the insert time (ms since the epoch); `onRun` gets start minus insert. */
export const makePing = (onRun: (jobId: number, latencyMs: number) => Effect.Effect<void>) =>
  Worker.make("BenchPing", {
    args: Schema.Struct({ insertedAt: Schema.Number }),
    queue: pingQueue,
    perform: (job) => Effect.suspend(() => onRun(job.id, epochMillis() - job.args.insertedAt))
  })

/** For inserting pings from a process that does not run them. */
export const Ping = makePing(() => Effect.void)
