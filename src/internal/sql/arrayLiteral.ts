/**
 * A `text[]` literal of `values` (to send as one text parameter cast to
 * `text[]`): each element quoted, its quotes and backslashes escaped, so any
 * text reads back as it was.
 */
export const textArrayLiteral = (values: ReadonlyArray<string>): string =>
  values.length === 0 ? "{}" : `{${values.map((value) => `"${value.replace(/["\\]/g, "\\$&")}"`).join(",")}}`
