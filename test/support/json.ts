/**
 * What a plain JSON value reads back as after a trip through JSON text, built
 * without `JSON.parse` (which misreads some escaped keys on Node.js 24 and 26;
 * see `src/internal/jsonParse.ts`): the same value with -0 as 0, and every
 * key, `__proto__` included, an own key.
 */
export const jsonRoundTrip = (value: unknown): unknown => {
  if (Object.is(value, -0)) return 0
  if (Array.isArray(value)) return value.map(jsonRoundTrip)
  if (typeof value === "object" && value !== null) {
    const copy: Record<string, unknown> = {}
    for (const [key, inner] of Object.entries(value)) {
      Object.defineProperty(copy, key, { value: jsonRoundTrip(inner), enumerable: true, writable: true, configurable: true })
    }
    return copy
  }
  return value
}
