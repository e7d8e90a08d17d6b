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

/**
 * Characters that change how the text around them reads without showing
 * themselves: controls, direction overrides and isolates (U+202E turns
 * `ok\u202Egnp.exe` into what reads as `okexe.png`), and zero-width ones.
 * Anyone who can enqueue a job chooses its names, args and errors, so an
 * operator must see these rather than their effect. The zero-width joiner
 * (U+200D), which emoji are built with, is left alone.
 */
const hidden = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F\u061C\u200B\u200E\u200F\u202A-\u202E\u2060\u2066-\u2069\uFEFF]/g

const codePoint = (char: string): string => char.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")

/** Text as HTML text: escaped, and each hidden character shown as its code point (`U+202E`), marked. */
const escapeText = (text: string): string =>
  escape(text).replace(hidden, (char) => `<span class="hidden-char">U+${codePoint(char)}</span>`)

/** Text as an attribute value: escaped, hidden characters kept as references (a form field keeps its exact value). */
const escapeAttribute = (text: string): string => escape(text).replace(hidden, (char) => `&#x${codePoint(char)};`)

export type Interpolation = Html | string | number | boolean | null | undefined | URLSearchParams | ReadonlyArray<Interpolation>

const render = (value: Interpolation, inTag: boolean): string => {
  if (value === null || value === undefined || value === false) return ""
  if (value instanceof Html) return value.value
  if (Array.isArray(value)) return value.map((item) => render(item, inTag)).join("")
  return inTag ? escapeAttribute(String(value)) : escapeText(String(value))
}

/**
 * Whether HTML ending with `out` is inside a tag (an attribute value, here): its last `<` comes after its last `>`.
 * Interpolated text never adds either (they are escaped), so only the templates' own markup counts.
 */
const insideTag = (out: string): boolean => out.lastIndexOf("<") > out.lastIndexOf(">")

/** A template whose interpolations are escaped (arrays are joined, `null`/`undefined`/`false` omitted). */
export const html = (strings: TemplateStringsArray, ...values: ReadonlyArray<Interpolation>): Html => {
  let out = strings[0]!
  for (let i = 0; i < values.length; i++) out += render(values[i]!, insideTag(out)) + strings[i + 1]!
  return new Html(out)
}

/** JSON of a value, indented, as text (for args, meta and errors). bigint becomes a string. */
export const prettyJson = (value: unknown): string =>
  JSON.stringify(value, (_key, item: unknown) => (typeof item === "bigint" ? item.toString() : item), 2) ?? "null"
