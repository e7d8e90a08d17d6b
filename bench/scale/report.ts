/**
 * Small helpers for the scale benchmark's output: aligned text tables,
 * medians and number formats.
 */

/** Aligns `rows` under `header`; the first column left, the others right. */
export const textTable = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => (row[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells.map((cell, i) => i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)).join("  ").trimEnd()
  return [line(header), widths.map((width) => "-".repeat(width)).join("  "), ...rows.map(line)].join("\n")
}

export const median = (values: ReadonlyArray<number>): number => {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b)
  if (sorted.length === 0) return Number.NaN
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

export const grouped = (value: number): string => Number.isFinite(value) ? Math.round(value).toLocaleString("en-US") : "-"

export const fixed = (value: number, digits: number): string => Number.isFinite(value) ? value.toFixed(digits) : "-"

export const ratio = (value: number): string => Number.isFinite(value) ? `${value.toFixed(2)}x` : "-"

export const megabytes = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1)

/** A positive integer from the environment, or `fallback`. */
export const envInt = (name: string, fallback: number): number => {
  const value = Number(process.env[name] ?? "")
  return Number.isSafeInteger(value) && value > 0 ? value : fallback
}
