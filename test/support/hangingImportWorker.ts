/**
 * A thread worker whose module waits a minute at its top level in a thread
 * (a timer, so the thread's loop stays busy): a node stopped meanwhile must
 * not wait for it. Used by test/threads.test.ts.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { isMainThread } from "node:worker_threads"
import * as Worker from "../../src/Worker.ts"

if (!isMainThread) await new Promise((resolve) => setTimeout(resolve, 60_000))

export const HangsOnImport = Worker.make("ThreadHangsOnImport", {
  args: Schema.Struct({}),
  queue: "hangs-on-import",
  maxAttempts: 1,
  threads: { module: import.meta.url },
  perform: () => Effect.void
})
