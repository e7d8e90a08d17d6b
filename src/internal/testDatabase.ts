/**
 * The testing kit's database: a migrated schema of its own on a real
 * PostgreSQL server, for one test file (or one suite), dropped afterwards.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import * as Config from "../Config.ts"
import type { InvalidConfigError, InvalidPrefixError, MigrationError } from "../Errors.ts"
import * as Migrations from "../Migrations.ts"
import { startDatabase } from "./embeddedPostgres.ts"

/**
 * No test database could be had: no `DATABASE_URL` and no embedded server
 * (not installed, or it did not start).
 */
export class TestDatabaseError extends Schema.TaggedError<TestDatabaseError>()("TestDatabaseError", {
  message: Schema.String
}) {}

/** What `database` takes; every field is optional. */
export interface DatabaseOptions {
  /** The server. Default: `DATABASE_URL`, else an embedded server started for the layer's life. */
  readonly url?: string | undefined
  /** The schema. Default: a fresh `oban_test_<random>`, so test files can run side by side. */
  readonly prefix?: string | undefined
  /** Apply the migrations to the schema. Default true. */
  readonly migrate?: boolean | undefined
  /** Keep the schema when the layer closes (to look at it afterwards). Default false: dropped. */
  readonly keepSchema?: boolean | undefined
  /** The size of the client's pool. Default 10. */
  readonly maxConnections?: number | undefined
}

/** A schema name no other layer is using. */
const freshPrefix = (): string => `oban_test_${crypto.randomUUID().replace(/-/g, "").slice(0, 12)}`

const embeddedServer = Effect.acquireRelease(
  Effect.tryPromise({
    try: () => startDatabase({ forceEmbedded: true }),
    catch: (error) => new TestDatabaseError({ message: error instanceof Error ? error.message : String(error) })
  }),
  (server) => Effect.promise(server.stop)
)

/** The schema: created by the migrations (or empty), dropped when the layer closes unless kept. */
const schemaLayer = (prefix: string, options: DatabaseOptions) =>
  Layer.effectDiscard(Effect.gen(function*() {
    const sql = (yield* PgClient.PgClient) as SqlClient
    if (options.keepSchema !== true) {
      yield* Effect.addFinalizer(() => Effect.ignore(sql.unsafe(`DROP SCHEMA IF EXISTS "${prefix}" CASCADE`)))
    }
    if (options.migrate === false) yield* sql.unsafe(`CREATE SCHEMA IF NOT EXISTS "${prefix}"`)
    else yield* Migrations.run({ prefix })
  }))

/**
 * A PostgreSQL client, and `ObanConfig.Settings` for a schema of the layer's own
 * (a `Context.Reference`, so it does not show in the layer's type), migrated
 * to this release.
 */
export const database = (
  options: DatabaseOptions = {}
): Layer.Layer<
  PgClient.PgClient | SqlClient,
  TestDatabaseError | InvalidPrefixError | InvalidConfigError | MigrationError | SqlError
> =>
  Layer.unwrap(Effect.gen(function*() {
    const fromEnv = process.env["DATABASE_URL"]
    const url = options.url ?? (fromEnv !== undefined && fromEnv !== "" ? fromEnv : (yield* embeddedServer).url)
    const prefix = options.prefix ?? freshPrefix()
    const client = PgClient.layer({
      url: Redacted.make(url),
      maxConnections: options.maxConnections ?? 10,
      applicationName: "effect-oban-test"
    })
    return schemaLayer(prefix, options).pipe(
      Layer.provideMerge(Config.layer({ prefix })),
      Layer.provideMerge(client)
    )
  }))
