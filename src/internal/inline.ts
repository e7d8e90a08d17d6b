/**
 * The hook behind the testing kit's inline mode: when a runner is in context,
 * `Oban.insert` runs the jobs it inserted (those due now) at once, in the
 * caller's fiber, and returns them as they ended.
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type { SqlError } from "effect/sql/SqlError"
import type { Job } from "../Job.ts"

/** Runs the jobs that are due and returns each job it ran as its attempt left it, by id. */
export type InlineRunner = (jobs: ReadonlyArray<Job>) => Effect.Effect<ReadonlyMap<number, Job>, SqlError>

export const InlineRunner: Context.Reference<InlineRunner | undefined> = Context.Reference<InlineRunner | undefined>(
  "effect-oban/InlineRunner",
  { defaultValue: () => undefined }
)
