/**
 * The hook behind the testing kit's inline mode: when a runner is in context,
 * `Oban.insert` runs the jobs it inserted (those due now) at once, in the
 * caller's fiber.
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type { SqlError } from "effect/sql/SqlError"
import type { Job } from "../Job.ts"

export type InlineRunner = (jobs: ReadonlyArray<Job>) => Effect.Effect<void, SqlError>

export const InlineRunner: Context.Reference<InlineRunner | undefined> = Context.Reference<InlineRunner | undefined>(
  "effect-oban/InlineRunner",
  { defaultValue: () => undefined }
)
