/**
 * The opaque cursor of a job list: where the previous page ended, for the
 * sort it was made with. Base64url of a small JSON object; a cursor made for
 * another sort, or one that does not decode, is refused.
 */
import { Effect } from "effect"
import { InvalidFilterError } from "../Errors.ts"
import type { Keyset, SortColumn } from "./sql/jobQueries.ts"

interface Encoded {
  readonly c: SortColumn
  readonly d: 0 | 1
  readonly m: string | null
  readonly i: number
}

export const encodeCursor = (column: SortColumn, descending: boolean, keyset: Keyset): string =>
  Buffer.from(JSON.stringify({ c: column, d: descending ? 1 : 0, m: keyset.micros, i: keyset.id } satisfies Encoded))
    .toString("base64url")

const refuse = (message: string) => Effect.fail(new InvalidFilterError({ field: "cursor", message }))

export const decodeCursor = (
  cursor: string,
  column: SortColumn,
  descending: boolean
): Effect.Effect<Keyset, InvalidFilterError> => {
  let value: unknown
  try {
    value = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"))
  } catch {
    return refuse("not a cursor returned by a job list")
  }
  if (typeof value !== "object" || value === null) return refuse("not a cursor returned by a job list")
  const encoded = value as Partial<Encoded>
  if (typeof encoded.i !== "number" || !Number.isSafeInteger(encoded.i)) {
    return refuse("not a cursor returned by a job list")
  }
  if (encoded.c !== column || encoded.d !== (descending ? 1 : 0)) {
    return refuse("the cursor was made for another sort: pass the same sort as the first page")
  }
  const micros = encoded.m ?? null
  if (column !== "id" && (typeof micros !== "string" || !/^-?\d{1,19}$/.test(micros))) {
    return refuse("not a cursor returned by a job list")
  }
  return Effect.succeed({ micros: column === "id" ? null : micros, id: encoded.i })
}
