/**
 * Formats the benchmark's result table with aligned columns.
 */
import type { Row } from "./common.ts"

interface Column {
  readonly title: string
  readonly align: "left" | "right"
  readonly cell: (row: Row) => string
}

const fixed = (value: number | undefined, digits: number): string =>
  value === undefined || !Number.isFinite(value) ? "-" : value.toFixed(digits)

const grouped = (value: number): string => value.toLocaleString("en-US")

const columns: ReadonlyArray<Column> = [
  { title: "workload", align: "left", cell: (row) => row.name },
  { title: "jobs", align: "right", cell: (row) => grouped(row.jobs) },
  { title: "wall s", align: "right", cell: (row) => fixed(row.wallMs / 1000, 2) },
  {
    title: "jobs/s",
    align: "right",
    cell: (row) => Number.isFinite(row.wallMs) && row.wallMs > 0 ? grouped(Math.round(row.jobs / (row.wallMs / 1000))) : "-"
  },
  { title: "p50 ms", align: "right", cell: (row) => fixed(row.latency?.p50, 1) },
  { title: "p95 ms", align: "right", cell: (row) => fixed(row.latency?.p95, 1) },
  { title: "p99 ms", align: "right", cell: (row) => fixed(row.latency?.p99, 1) },
  { title: "ok", align: "left", cell: (row) => row.problems.length === 0 ? "yes" : "NO" },
  { title: "notes", align: "left", cell: (row) => row.note ?? "" }
]

const pad = (text: string, width: number, align: "left" | "right") =>
  align === "left" ? text.padEnd(width) : text.padStart(width)

/** The rows as a text table, one line per row under a header and a rule. */
export const renderTable = (rows: ReadonlyArray<Row>): string => {
  const cells = rows.map((row) => columns.map((column) => column.cell(row)))
  const widths = columns.map((column, i) => Math.max(column.title.length, ...cells.map((line) => line[i]!.length)))
  const line = (values: ReadonlyArray<string>) =>
    values.map((value, i) => pad(value, widths[i]!, columns[i]!.align)).join("  ").trimEnd()
  return [
    line(columns.map((column) => column.title)),
    widths.map((width) => "-".repeat(width)).join("  "),
    ...cells.map(line)
  ].join("\n")
}
