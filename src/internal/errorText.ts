/**
 * Error text on its way into a job's `errors` (jsonb). PostgreSQL refuses a
 * jsonb string holding U+0000 or half of a UTF-16 surrogate pair, and a
 * worker's message can be any size, so every message and cause is cleaned
 * and bounded here before it is written.
 */

/**
 * The most bytes one message or cause keeps, as PostgreSQL writes it back in JSON (UTF-8, with `"`, `\\`
 * and control characters escaped: a control character is six bytes, `\u001b`); the rest is cut with a
 * note. Counted so, 20 entries of a job's `errors` stay a small part of what the driver reads in one
 * message.
 */
export const maxErrorTextBytes = 64 * 1024

const replacement = "\uFFFD"

// NUL, a high surrogate not followed by a low one, or a low surrogate not preceded by a high one.
const unstorable = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g

const encoder = new TextEncoder()

// What JSON escapes: two bytes for these, six (`\u0001`) for the other control characters.
const escaped = /["\\\u0000-\u001f]/g
const shortEscapes = new Set(["\"", "\\", "\b", "\f", "\n", "\r", "\t"])

/** The bytes of `text` as JSON writes it in a string: UTF-8, plus what its escapes add. */
const storedBytes = (text: string): number => {
  let extra = 0
  for (const match of text.matchAll(escaped)) extra += shortEscapes.has(match[0]) ? 1 : 5
  return encoder.encode(text).length + extra
}

/** The longest start of `text` (whole code points) whose stored bytes are at most `limit`. */
const cutStored = (text: string, limit: number): string => {
  let low = 0
  let high = text.length
  while (low < high) {
    const middle = Math.ceil((low + high) / 2)
    if (storedBytes(text.slice(0, middle)) <= limit) low = middle
    else high = middle - 1
  }
  // Not between the two halves of a surrogate pair.
  const end = low > 0 && /[\uD800-\uDBFF]/.test(text[low - 1]!) ? low - 1 : low
  return text.slice(0, end)
}

const note = (omitted: number) => `\n... [truncated: ${omitted} more bytes]`

/** `text` cut to at most `max` characters, with `...` after a cut (for a line people read). */
export const cutText = (text: string, max: number): string => text.length > max ? `${text.slice(0, max)}...` : text

/** The first line of `text`, cut to `max` characters. */
export const firstLine = (text: string, max: number): string => {
  const newline = text.indexOf("\n")
  return cutText(newline === -1 ? text : text.slice(0, newline), max)
}

/**
 * Whether `text`, as `clean` returned it, was cut: it ends with the note
 * `clean` adds and fills the bytes a cut keeps (a short message that merely
 * ends with such a line was not cut).
 */
export const wasCut = (text: string, maxBytes: number = maxErrorTextBytes): boolean =>
  /\n\.\.\. \[truncated: \d+ more bytes\]$/.test(text) &&
  // A cut keeps at least `maxBytes` less the longest note and one code point (escaped) it backed off.
  storedBytes(text) > maxBytes - storedBytes(note(Number.MAX_SAFE_INTEGER)) - 12

/**
 * `text` with NUL and lone surrogates replaced by U+FFFD, cut to at most
 * `maxBytes` as stored (see `maxErrorTextBytes`; a note at the end says how
 * many bytes were cut).
 */
export const clean = (text: string, maxBytes: number = maxErrorTextBytes): string => {
  const stored = text.replace(unstorable, replacement)
  // A UTF-16 unit is at most 6 stored bytes (an escaped control character): most text needs no count.
  if (stored.length * 6 <= maxBytes) return stored
  const bytes = storedBytes(stored)
  if (bytes <= maxBytes) return stored
  // The note's length depends on the count; leaving room for the longest one is enough.
  const kept = cutStored(stored, maxBytes - storedBytes(note(bytes)))
  return kept + note(bytes - storedBytes(kept))
}
