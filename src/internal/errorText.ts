/**
 * Error text on its way into a job's `errors` (jsonb). PostgreSQL refuses a
 * jsonb string holding U+0000 or half of a UTF-16 surrogate pair, and a
 * worker's message can be any size, so every message and cause is cleaned
 * and bounded here before it is written.
 */

/** The most UTF-8 bytes one message or cause keeps; the rest is cut with a note. */
export const maxErrorTextBytes = 64 * 1024

const replacement = "\uFFFD"

// NUL, a high surrogate not followed by a low one, or a low surrogate not preceded by a high one.
const unstorable = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** Cuts `bytes` to at most `limit`, backing off to the start of a UTF-8 sequence. */
const cutUtf8 = (bytes: Uint8Array, limit: number): Uint8Array => {
  let end = limit
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--
  return bytes.subarray(0, end)
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
  // A cut keeps at least `maxBytes` less the longest note and one UTF-8 sequence it backed off.
  encoder.encode(text).length > maxBytes - encoder.encode(note(Number.MAX_SAFE_INTEGER)).length - 4

/**
 * `text` with NUL and lone surrogates replaced by U+FFFD, cut to at most
 * `maxBytes` UTF-8 bytes (a note at the end says how much was cut).
 */
export const clean = (text: string, maxBytes: number = maxErrorTextBytes): string => {
  const stored = text.replace(unstorable, replacement)
  // A UTF-16 unit is at most 3 UTF-8 bytes: most text needs no encoding to know it fits.
  if (stored.length * 3 <= maxBytes) return stored
  const bytes = encoder.encode(stored)
  if (bytes.length <= maxBytes) return stored
  // The note's length depends on the count; leaving room for the longest one is enough.
  const kept = cutUtf8(bytes, maxBytes - encoder.encode(note(bytes.length)).length)
  return decoder.decode(kept) + note(bytes.length - kept.length)
}
