import { Effect, Schema } from "effect"
import * as Worker from "../../src/Worker.ts"

export const SendEmail = Worker.make("SendEmail", {
  args: Schema.Struct({ to: Schema.String, subject: Schema.String }),
  queue: "mailers",
  maxAttempts: 5,
  perform: () => Effect.void
})

export const Resize = Worker.make("Resize", {
  args: Schema.Struct({ imageId: Schema.Int, at: Schema.Date }),
  perform: () => Effect.void
})
