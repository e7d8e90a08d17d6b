/**
 * HTML built from templates whose interpolations are escaped: a value becomes
 * text unless it is already `Html` (made by this module). Job data (args,
 * meta, errors, names) is therefore never markup, whatever it holds.
 */
import { codePoint, replaceHidden } from "../hiddenChars.ts"

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

/** Text as HTML text: escaped, and each hidden character (see `hiddenChars.ts`) shown as its code point (`U+202E`), marked. */
const escapeText = (text: string): string =>
  replaceHidden(escape(text), (char) => `<span class="hidden-char">U+${codePoint(char)}</span>`, true)

/** Text as an attribute value: escaped, hidden characters kept as references (a form field keeps its exact value). */
const escapeAttribute = (text: string): string => replaceHidden(escape(text), (char) => `&#x${codePoint(char)};`)

/** Text for where markup is not parsed (`<title>`): escaped, hidden characters as `U+202E` without a mark. */
export const plainVisibleText = (text: string): Html =>
  new Html(replaceHidden(escape(text), (char) => `U+${codePoint(char)}`))

export type Interpolation = Html | string | number | boolean | null | undefined | URLSearchParams | ReadonlyArray<Interpolation>

const render = (value: Interpolation, inTag: boolean): string => {
  if (value === null || value === undefined || value === false) return ""
  if (value instanceof Html) return value.value
  if (Array.isArray(value)) return value.map((item) => render(item, inTag)).join("")
  return inTag ? escapeAttribute(String(value)) : escapeText(String(value))
}

/**
 * Whether HTML ending with `out` is inside a tag (an attribute value, here): its last `<` comes after its last `>`,
 * or a quote after that `<` is still open. Interpolated text never adds `<`, `>` or `"` (they are escaped), so only
 * the templates' own markup counts.
 */
const insideTag = (out: string): boolean => {
  const open = out.lastIndexOf("<")
  if (open < 0) return false
  // An attribute value left open holds any `>` of the template's own text (`title="a > b ${value}"`).
  let quotes = 0
  for (let i = open; i < out.length; i++) if (out.charCodeAt(i) === 34) quotes++
  return quotes % 2 === 1 || open > out.lastIndexOf(">")
}

/** A template whose interpolations are escaped (arrays are joined, `null`/`undefined`/`false` omitted). */
export const html = (strings: TemplateStringsArray, ...values: ReadonlyArray<Interpolation>): Html => {
  let out = strings[0]!
  for (let i = 0; i < values.length; i++) out += render(values[i]!, insideTag(out)) + strings[i + 1]!
  return new Html(out)
}

/** JSON of a value, indented, as text (for args, meta and errors). bigint becomes a string. */
export const prettyJson = (value: unknown): string =>
  JSON.stringify(value, (_key, item: unknown) => (typeof item === "bigint" ? item.toString() : item), 2) ?? "null"
