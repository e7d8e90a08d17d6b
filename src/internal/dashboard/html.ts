/**
 * HTML built from templates whose interpolations are escaped: a value becomes
 * text unless it is already `Html` (made by this module). Job data (args,
 * meta, errors, names) is therefore never markup, whatever it holds.
 */

/** Markup that is safe to insert as it is. */
export class Html {
  readonly value: string
  constructor(value: string) {
    this.value = value
  }
  toString(): string {
    return this.value
  }
}

const replacements: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  "\"": "&quot;",
  "'": "&#39;",
  "`": "&#96;"
}

/** Text as HTML text or attribute value (quotes included). */
export const escape = (text: string): string => text.replace(/[&<>"'`]/g, (char) => replacements[char]!)

export type Interpolation = Html | string | number | boolean | null | undefined | URLSearchParams | ReadonlyArray<Interpolation>

const render = (value: Interpolation): string => {
  if (value === null || value === undefined || value === false) return ""
  if (value instanceof Html) return value.value
  if (Array.isArray(value)) return value.map(render).join("")
  return escape(String(value))
}

/** A template whose interpolations are escaped (arrays are joined, `null`/`undefined`/`false` omitted). */
export const html = (strings: TemplateStringsArray, ...values: ReadonlyArray<Interpolation>): Html => {
  let out = strings[0]!
  for (let i = 0; i < values.length; i++) out += render(values[i]!) + strings[i + 1]!
  return new Html(out)
}

/** JSON of a value, indented, as text (for args, meta and errors). bigint becomes a string. */
export const prettyJson = (value: unknown): string =>
  JSON.stringify(value, (_key, item: unknown) => (typeof item === "bigint" ? item.toString() : item), 2) ?? "null"
