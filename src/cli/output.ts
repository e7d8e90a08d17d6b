/**
 * How the CLI prints: aligned text tables for people, JSON for scripts
 * (`--json`), and errors on stderr (as JSON too with `--json`).
 */
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import { replaceHidden, terminalText } from "../internal/hiddenChars.ts"

/** JSON text of a result: dates as ISO strings, bigints as numbers. */
export const json = (value: unknown): string =>
  JSON.stringify(value, (_key, item) => typeof item === "bigint" ? Number(item) : item, 2)

/** A value as one table cell, hidden characters (controls, direction overrides) as `\\u{202E}`. */
export const cell = (value: unknown): string => {
  if (value === null || value === undefined) return "-"
  // PostgreSQL's infinity and -infinity arrive as an invalid Date, on which toISOString throws.
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? "infinite" : value.toISOString()
  // Job data is anyone's who can enqueue: an ESC sequence in a queue name would drive the operator's terminal.
  return terminalText(typeof value === "object" ? JSON.stringify(value) : String(value))
}

/** An aligned table with a header row; "(none)" when there are no rows. */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<unknown>>): string => {
  if (rows.length === 0) return "(none)"
  const cells = rows.map((row) => row.map(cell))
  const widths = header.map((title, index) => Math.max(title.length, ...cells.map((row) => row[index]?.length ?? 0)))
  const line = (values: ReadonlyArray<string>) =>
    values.map((value, index) => value.padEnd(widths[index]!)).join("  ").trimEnd()
  return [line(header), ...cells.map(line)].join("\n")
}

/** Prints `value` as JSON when `asJson`, else the human text. */
export const print = (asJson: boolean, value: unknown, human: () => string): Effect.Effect<void> =>
  Console.log(asJson ? jsonEscapingHidden(json(value)) : terminalText(human(), true))

/**
 * JSON text with its hidden characters written as JSON escapes (`\u202e`): the same data for a script,
 * while a terminal showing it gets no control or direction character (JSON.stringify escapes C0 only).
 */
const jsonEscapingHidden = (text: string): string =>
  replaceHidden(text, (char) => Array.from({ length: char.length }, (_, i) => `\\u${char.charCodeAt(i).toString(16).padStart(4, "0")}`).join(""), true)
