/**
 * The application around the docs' snippets: the services, layers and
 * workers that a snippet uses without defining. `checkSnippets.ts` imports
 * from here every name a snippet uses and neither imports nor declares, so
 * snippets stay short and still type-check against the real library.
 */
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer, Redacted, Schema } from "effect"
import { FileSystem } from "effect/FileSystem"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { Cron, Oban, Worker } from "effect-oban"

export class MailError extends Schema.TaggedError<MailError>()("MailError", { message: Schema.String }) {}
export class BadAddress extends Schema.TaggedError<BadAddress>()("BadAddress", { message: Schema.String }) {}

/** An application service the workers need. */
export class Mailer extends Context.Service<Mailer, {
  readonly send: (userId: string) => Effect.Effect<void, MailError | BadAddress>
}>()("app/Mailer") {
  static readonly send = (userId: string): Effect.Effect<void, MailError | BadAddress, Mailer> =>
    Effect.gen(function*() {
      const mailer = yield* Mailer
      return yield* mailer.send(userId)
    })
}
export const MailerLive = Layer.succeed(Mailer, Mailer.of({ send: () => Effect.void }))
export const MailerTest = MailerLive

/** A service a thread worker takes from its `threads.layer`. */
export class ImageStore extends Context.Service<ImageStore, {
  readonly get: (key: string) => Effect.Effect<Uint8Array>
}>()("app/ImageStore") {}
export declare const ImageStoreLive: Layer.Layer<ImageStore>
export declare const resize: (image: Uint8Array, width: number) => { readonly bytes: number }

export interface User {
  readonly id: string
  readonly email: string
}
export declare const user: User
export declare const users: ReadonlyArray<User>
export declare const Users: {
  readonly create: (user: User) => Effect.Effect<void, SqlError, SqlClient>
}

/** Stand-ins for the work some snippets' workers do. */
export declare const Sync: { readonly run: (accountId: string) => Effect.Effect<void> }
export declare const Exports: { readonly isReady: (exportId: string) => Effect.Effect<boolean> }
export declare const Search: { readonly reindex: (documentId: string) => Effect.Effect<void> }

export const PgLive = PgClient.layer({ url: Redacted.make(process.env.DATABASE_URL!) })

export const SendWelcome = Worker.make("SendWelcome", {
  args: Schema.Struct({ userId: Schema.String }),
  queue: "mailers",
  perform: (job) => Mailer.send(job.args.userId)
})
export const SendEmail = Worker.make("SendEmail", {
  args: Schema.Struct({ to: Schema.String }),
  queue: "mailers",
  perform: () => Effect.void
})
export const SignUp = Worker.make("SignUp", {
  args: Schema.Struct({ email: Schema.String }),
  perform: (job) => Oban.insert(SendEmail.job({ to: job.args.email })).pipe(Effect.orDie, Effect.asVoid)
})
export const Transcode = Worker.make("Transcode", {
  args: Schema.Struct({ file: Schema.String }),
  queue: "media",
  perform: () => Effect.void
})
/** A worker that records a result (docs/workers.md). */
export const Thumbnail = Worker.make("Thumbnail", {
  args: Schema.Struct({ width: Schema.Int }),
  result: Schema.Struct({ bytes: Schema.Int }),
  perform: (job) => Effect.succeed({ bytes: job.args.width * 100 })
})
export const DailyReport = Worker.make("DailyReport", {
  args: Schema.Struct({ kind: Schema.String }),
  perform: () => Effect.void
})
export const Heartbeat = Worker.make("Heartbeat", { args: Schema.Struct({}), perform: () => Effect.void })
export class CardDeclined extends Schema.TaggedError<CardDeclined>()("CardDeclined", {}) {}
export const Charge = Worker.make("Charge", {
  args: Schema.Struct({ amount: Schema.Number }),
  perform: (): Effect.Effect<void, CardDeclined> => Effect.void
})
export const Slow = Worker.make("Slow", { args: Schema.Struct({}), timeout: "30 seconds", perform: () => Effect.never })
export const Flaky = Worker.make("Flaky", {
  args: Schema.Struct({}),
  maxAttempts: 4,
  perform: (): Effect.Effect<void, MailError> => Effect.void
})

export const Export = Worker.make("Export", { args: Schema.Struct({ id: Schema.String }), perform: () => Effect.void })
export const SyncAccount = Worker.make("SyncAccount", {
  args: Schema.Struct({ accountId: Schema.String }),
  perform: (job) => Sync.run(job.args.accountId)
})
export const DeliverWebhook = Worker.make("DeliverWebhook", {
  args: Schema.Struct({ url: Schema.String }),
  perform: () => Effect.void
})

export const ObanLive = Oban.layer({ queues: { default: 10, mailers: 20 }, workers: [SendWelcome] })

export declare const id: number
export declare const entries: ReadonlyArray<Cron.Parsed>
export declare const from: Date
export declare const to: Date
export declare const sql: SqlClient
export declare const prefix: string
export declare const fs: FileSystem
