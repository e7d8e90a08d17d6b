/**
 * The testing kit's error, in a module of its own so that the kit's internal
 * modules can fail with it.
 */
import * as Schema from "effect/Schema"

/**
 * A helper's expectation did not hold.
 *
 * @since 0.1.0
 */
export class ObanTestError extends Schema.TaggedError<ObanTestError>()("ObanTestError", {
  message: Schema.String
}) {}
