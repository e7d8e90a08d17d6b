/**
 * Characters that change how the text around them reads without showing
 * themselves: controls (C0 and C1, ESC among them, which drives a terminal),
 * format characters (direction overrides such as U+202E, which turns
 * `ok\u202Egnp.exe` into what reads as `okexe.png`, zero-width ones, the soft
 * hyphen, tag characters) and the line and paragraph separators. Anyone who
 * can enqueue a job chooses its names, args and errors, so the dashboard and
 * the CLI show these as their code points rather than their effect. The
 * zero-width joiner and non-joiner (U+200D, U+200C), which emoji and some
 * scripts are written with, are left alone; so are tab and line feed where
 * the caller keeps them (`keepLines`).
 */
const hidden = /(?![\u200C\u200D])[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu
const hiddenButLines = /(?![\t\n\u200C\u200D])[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu

/** A character's code point in hex, at least 4 digits (`202E`). */
export const codePoint = (char: string): string => char.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")

/** `text` with each hidden character replaced by what `show` makes of it. */
export const replaceHidden = (text: string, show: (char: string) => string, keepLines = false): string =>
  text.replace(keepLines ? hiddenButLines : hidden, show)

/** `text` for a terminal: each hidden character as `\u{202E}`, so no escape sequence reaches the terminal. */
export const terminalText = (text: string, keepLines = false): string =>
  replaceHidden(text, (char) => `\\u{${codePoint(char)}}`, keepLines)
