/**
 * Plain node-postgres helpers for the comparison benchmark: run one
 * statement on a short-lived client, drop a schema.
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

export const quoteIdent = (name: string): string => `"${name.replaceAll("\"", "\"\"")}"`

export const dropSchema = async (url: string, schema: string): Promise<void> => {
  await query(url, `DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`)
}
