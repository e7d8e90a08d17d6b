/**
 * The opaque cursor of a job list: where the previous page ended, for the
 * sort it was made with. Base64url of a small JSON object; a cursor made for
 * another sort, or one that does not decode, is refused.
 */
import * as Effect from "effect/Effect"
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

// The positions the page query can turn back into a timestamp: from 4714-11-24 BC (PostgreSQL's
// earliest timestamptz) up to the largest interval of microseconds it builds (2^63 - 1024, about
// 294247 AD).
const minMicros = -210_866_803_200_000_000n
const maxMicros = 9_223_372_036_854_774_784n

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
  // A page that ended on a time plain SQL set to infinity (see `listJobs`).
  if (column !== "id" && (micros === "infinity" || micros === "-infinity")) return Effect.succeed({ micros, id: encoded.i })
  if (column !== "id" && (typeof micros !== "string" || !/^-?\d{1,19}$/.test(micros))) {
    return refuse("not a cursor returned by a job list")
  }
  // A tampered position out of that range is bad input, not an out-of-range error from the database.
  if (column !== "id" && (BigInt(micros as string) < minMicros || BigInt(micros as string) > maxMicros)) {
    return refuse("not a cursor returned by a job list")
  }
  return Effect.succeed({ micros: column === "id" ? null : micros, id: encoded.i })
}
