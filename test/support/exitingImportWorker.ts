/**
 * A thread worker whose module ends its thread as it is imported there
 * (`process.exit` at the top level): its attempts fail as crashes that say
 * so. Used by test/threads.test.ts.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { isMainThread } from "node:worker_threads"
import * as Worker from "../../src/Worker.ts"

if (!isMainThread) process.exit(3)

export const ExitsOnImport = Worker.make("ThreadExitsOnImport", {
  args: Schema.Struct({}),
  queue: "exits-on-import",
  timeout: "20 seconds",
  maxAttempts: 1,
  threads: { module: import.meta.url },
  perform: () => Effect.void
})
