/**
 * Plain node-postgres helpers for the comparison benchmark: run one
 * statement on a short-lived client, keep one client for a queue's repeated
 * checks, drop a schema.
 */
import pg from "pg"

/** Runs `text` on a fresh connection and returns its rows. */
export const query = async <R extends pg.QueryResultRow>(
  url: string,
  text: string,
  values: ReadonlyArray<unknown> = []
): Promise<Array<R>> => {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    const result = await client.query<R>(text, [...values])
    return result.rows
  } finally {
    await client.end()
  }
}

/** Runs statements on one connection, opened by the first and kept until `end`. */
export interface Checker {
  readonly query: <R extends pg.QueryResultRow>(text: string, values?: ReadonlyArray<unknown>) => Promise<Array<R>>
  readonly end: () => Promise<void>
}

/**
 * A connection for a queue's counts and settled checks. A drain polls them
 * every 20 ms; a new connection per poll would cost the server a backend
 * start each time, inside the peer's timed drain, where effect-oban's own
 * checks reuse its pool.
 */
export const makeChecker = (url: string): Checker => {
  let connected: Promise<pg.Client> | undefined
  const connect = () =>
    connected ??= (async () => {
      const client = new pg.Client({ connectionString: url })
      // A kept connection sits idle between drains: a server that drops it must not crash the process.
      client.on("error", (error) => console.error(`bench check connection: ${error.message}`))
      await client.connect()
      return client
    })()
  return {
    query: async <R extends pg.QueryResultRow>(text: string, values: ReadonlyArray<unknown> = []) => {
      const client = await connect()
      return (await client.query<R>(text, [...values])).rows
    },
    end: async () => {
      const opened = connected
      connected = undefined
      // A connection that never opened has nothing to close; its error was the caller's already.
      const client = await opened?.catch(() => undefined)
      await client?.end()
    }
  }
}

export const quoteIdent = (name: string): string => `"${name.replaceAll("\"", "\"\"")}"`

export const dropSchema = async (url: string, schema: string): Promise<void> => {
  await query(url, `DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`)
}
