/**
 * The database for runnable examples: `DATABASE_URL`, or an embedded
 * PostgreSQL server that lives as long as the layer.
 */
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Redacted } from "effect"
import { startDatabase } from "../support/database.ts"

export const DatabaseLive = (options: { readonly maxConnections?: number } = {}) =>
  Layer.unwrap(
    Effect.gen(function*() {
      const database = yield* Effect.acquireRelease(
        Effect.promise(() => startDatabase()),
        (database) => Effect.promise(() => database.stop())
      )
      yield* Effect.log(database.embedded ? "started an embedded PostgreSQL server" : "using DATABASE_URL")
      return PgClient.layer({
        url: Redacted.make(database.url),
        maxConnections: options.maxConnections ?? 20,
        applicationName: "effect-oban-demo"
      })
    })
  )
