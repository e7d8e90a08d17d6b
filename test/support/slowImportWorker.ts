/**
 * A thread worker whose module takes a second to import (a top-level wait,
 * standing for a module graph that is slow to load), with a timeout shorter
 * than that: its attempts complete only if the import is not counted in
 * their timeout (see the pool's `Preload`). Used by test/threads.test.ts.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { isMainThread } from "node:worker_threads"
import * as Worker from "../../src/Worker.ts"

if (!isMainThread) await new Promise((resolve) => setTimeout(resolve, 1_000))

export const SlowToImport = Worker.make("ThreadSlowToImport", {
  args: Schema.Struct({ n: Schema.Int }),
  queue: "slow-import",
  timeout: "500 millis",
  maxAttempts: 1,
  threads: { module: import.meta.url },
  perform: () => Effect.void
})
