/**
 * The client the library's statements run on: the application's, without the
 * name transforms it may have been configured with (`transformResultNames`,
 * `transformQueryNames`). The library's SQL names the database's columns and
 * reads its rows by those names; a client that renames `scheduled_at` to
 * `scheduledAt` would leave every job it reads without its times. The plain
 * client shares the application's pool and transaction, so an insert inside
 * the caller's `sql.withTransaction` still joins it, and the application's own
 * statements keep their transforms.
 */
import type { SqlClient } from "effect/sql/SqlClient"

/** One plain client per client: making one builds a statement constructor, which a hot path should not repeat. */
const plainOf = new WeakMap<SqlClient, SqlClient>()

/** `sql` without its name transforms: made once per client (a client made plain already maps to itself). */
export const plain = (sql: SqlClient): SqlClient => {
  let client = plainOf.get(sql)
  if (client === undefined) {
    client = sql.withoutTransforms()
    plainOf.set(sql, client)
    // A plain client's own `withoutTransforms` returns it: it maps to itself.
    plainOf.set(client, client)
  }
  return client
}
