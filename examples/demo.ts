/**
 * `npm start`: migrates a schema, enqueues a few jobs inside one transaction
 * together with a business write, and prints them.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { Migrations, Oban, Worker } from "../src/index.ts"
import { DatabaseLive } from "./database.ts"

const SendWelcome = Worker.make("SendWelcome", {
  args: Schema.Struct({ userId: Schema.String }),
  queue: "mailers",
  maxAttempts: 5,
  perform: (job) => Console.log(`welcome, ${job.args.userId}`)
})

const ResizeAvatar = Worker.make("ResizeAvatar", {
  args: Schema.Struct({ userId: Schema.String, size: Schema.Int }),
  queue: "media",
  perform: () => Effect.void
})

const program = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* Migrations.run()
  yield* sql`CREATE TABLE IF NOT EXISTS demo_users (id text PRIMARY KEY, name text NOT NULL)`
  const userId = `user-${Date.now()}`
  const jobs = yield* sql.withTransaction(Effect.gen(function*() {
    yield* sql`INSERT INTO demo_users (id, name) VALUES (${userId}, 'Ada')`
    return yield* Oban.insertAll([
      SendWelcome.job({ userId }),
      SendWelcome.job({ userId }, { scheduleIn: "5 minutes", tags: ["reminder"] }),
      ResizeAvatar.job({ userId, size: 256 }, { priority: 1 })
    ])
  }))
  yield* Console.log("inserted in one transaction with the user row:")
  for (const job of jobs) {
    yield* Console.log(
      `  #${job.id} ${job.worker.padEnd(13)} queue=${job.queue.padEnd(8)} state=${job.state.padEnd(10)} ` +
        `scheduled_at=${job.scheduledAt.toISOString()} args=${JSON.stringify(job.args)}`
    )
  }
})

program.pipe(Effect.provide(DatabaseLive()), NodeRuntime.runMain)
