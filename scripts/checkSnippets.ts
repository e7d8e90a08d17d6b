/**
 * Type-checks every TypeScript block of README.md and docs/ against the
 * library's source, so a snippet that no longer compiles fails CI.
 *
 * Each ```ts block becomes a module. A block whose fence reads ```ts gen is
 * the body of an `Effect.gen` (statements with `yield*`) and is wrapped in
 * one. Names a block uses without importing or declaring them are imported
 * for it: Effect's modules from "effect", the library's from "effect-oban",
 * and the application around the snippets (Mailer, PgLive, SendWelcome, ...)
 * from scripts/snippets/world.ts.
 *
 * Usage: node scripts/checkSnippets.ts [markdown files...]
 * (default: README.md and docs/*.md). Exits 1 listing each error at its
 * markdown line.
 */
import { execFileSync } from "node:child_process"
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { basename, join, relative, resolve } from "node:path"

const root = resolve(import.meta.dirname, "..")
// One directory per run, so that runs side by side (CI and a test) do not share files.
const outDir = join(root, ".snippets", String(process.pid))

interface Block {
  readonly file: string
  /** 1-based markdown line of the block's first code line. */
  readonly line: number
  readonly gen: boolean
  readonly code: string
}

/** Where each name comes from when a block uses it without importing it. */
const sources: ReadonlyArray<readonly [string, ReadonlyArray<string>]> = [
  ["effect", [
    "Cause", "Clock", "Console", "Context", "Data", "DateTime", "Duration", "Effect", "Exit", "Fiber", "Layer",
    "Metric", "Option", "Random", "Redacted", "Schedule", "Schema", "Scope", "Stream"
  ]],
  ["effect/testing", ["TestClock"]],
  ["effect/sql/SqlClient", ["SqlClient"]],
  ["@effect/sql-pg", ["PgClient"]],
  // A module of its own, imported whole (`import * as NodeRuntime from ...`), as the guides do.
  ["@effect/platform-node/NodeRuntime", ["NodeRuntime"]],
  ["@effect/vitest", ["assert"]],
  ["effect-oban", [
    "Backoff", "Batch", "Chain", "Cluster", "Config", "Cron", "Events", "ExternalInsert", "Job", "Jobs", "Leader", "Migrations",
    "Oban", "ObanClock", "ObanConfig", "Pruner", "Rescuer", "Stager", "Worker", "Workflow"
  ]],
  ["./world.ts", worldNames()]
]

function worldNames(): ReadonlyArray<string> {
  const text = readFileSync(join(root, "scripts/snippets/world.ts"), "utf8")
  return [...text.matchAll(/^export (?:declare )?(?:const|class|interface|type) (\w+)/gm)].map((m) => m[1]!)
}

const blocksOf = (file: string): ReadonlyArray<Block> => {
  const lines = readFileSync(file, "utf8").split("\n")
  const blocks: Array<Block> = []
  for (let i = 0; i < lines.length; i++) {
    const fence = /^```(ts|typescript)(?:\s+(\w+))?\s*$/.exec(lines[i]!)
    if (fence === null) continue
    const start = i + 1
    let end = start
    while (end < lines.length && !lines[end]!.startsWith("```")) end++
    blocks.push({ file, line: start + 1, gen: fence[2] === "gen", code: lines.slice(start, end).join("\n") })
    i = end
  }
  return blocks
}

/** Names the block brings in itself: imported, or declared at any level (a conservative over-approximation). */
const ownNames = (code: string): Set<string> => {
  const names = new Set<string>()
  for (const m of code.matchAll(/import\s+(?:type\s+)?(?:\*\s+as\s+(\w+)|\{([^}]*)\}|(\w+))/g)) {
    if (m[1]) names.add(m[1])
    if (m[3]) names.add(m[3])
    for (const part of (m[2] ?? "").split(",")) {
      const name = part.trim().split(/\s+as\s+/).pop()?.replace(/^type\s+/, "")
      if (name) names.add(name)
    }
  }
  for (const m of code.matchAll(/\b(?:const|let|var|class|function|interface|type|enum)\s+(\w+)/g)) names.add(m[1]!)
  return names
}

const moduleOf = (block: Block): { readonly text: string; readonly offset: number } => {
  const own = ownNames(block.code)
  const used = new Set(block.code.match(/\b[A-Za-z_]\w*\b/g) ?? [])
  const imports: Array<string> = []
  for (const [from, names] of sources) {
    const needed = names.filter((name) => used.has(name) && !own.has(name))
    if (needed.length === 0) continue
    if (from === "@effect/platform-node/NodeRuntime") imports.push(`import * as NodeRuntime from "${from}"`)
    else imports.push(`import { ${needed.join(", ")} } from "${from}"`)
  }
  const codeLines = block.code.split("\n")
  const importEnd = block.gen ? codeLines.findIndex((line) => !/^import\b/.test(line) && line.trim() !== "") : 0
  const head = block.gen ? codeLines.slice(0, Math.max(importEnd, 0)) : []
  const body = block.gen ? codeLines.slice(Math.max(importEnd, 0)) : codeLines
  if (used.has("ObanTest") && !own.has("ObanTest")) imports.push(`import * as ObanTest from "effect-oban/testing"`)
  const prelude = [...imports, ...head, ...(block.gen ? ["export const snippet = Effect.gen(function*() {"] : [])]
  if (block.gen && !own.has("Effect") && !imports.some((line) => /\bEffect\b/.test(line))) {
    prelude.unshift(`import { Effect } from "effect"`)
  }
  const tail = block.gen ? ["})"] : []
  // `export {}` keeps a block without imports a module, so its names stay its own.
  const text = [...prelude, ...body, ...tail, "export {}", ""].join("\n")
  // Markdown line = module line - offset (body lines only; the head keeps its own lines in gen blocks).
  return { text, offset: prelude.length - head.length }
}

const markdownFiles = (): ReadonlyArray<string> => {
  const args = process.argv.slice(2)
  if (args.length > 0) return args.map((arg) => resolve(arg))
  const docs = join(root, "docs")
  return [join(root, "README.md"), ...readdirSync(docs).filter((f) => f.endsWith(".md")).sort().map((f) => join(docs, f))]
}

const main = (): number => {
  rmSync(outDir, { recursive: true, force: true })
  mkdirSync(outDir, { recursive: true })
  writeFileSync(join(outDir, "world.ts"), readFileSync(join(root, "scripts/snippets/world.ts"), "utf8"))
  const origin = new Map<string, { readonly block: Block; readonly offset: number }>()
  let count = 0
  for (const file of markdownFiles()) {
    for (const block of blocksOf(file)) {
      const name = `${basename(file, ".md")}-${block.line}.ts`
      const { text, offset } = moduleOf(block)
      writeFileSync(join(outDir, name), text)
      origin.set(name, { block, offset })
      count++
    }
  }
  writeFileSync(join(outDir, "tsconfig.json"), JSON.stringify({
    extends: "../../tsconfig.json",
    compilerOptions: { noUnusedLocals: false, noUnusedParameters: false, verbatimModuleSyntax: false },
    include: ["*.ts"]
  }, null, 2))
  const tsc = join(root, "node_modules/typescript/bin/tsc")
  try {
    execFileSync(process.execPath, [tsc, "--noEmit", "--pretty", "false", "-p", outDir], { encoding: "utf8" })
    console.log(`snippets: ${count} TypeScript blocks type-check`)
    return 0
  } catch (error) {
    const output = String((error as { stdout?: unknown }).stdout ?? error)
    for (const line of output.split("\n")) {
      const m = /^(?:.*\/)?\.snippets\/\d+\/([^(]+)\((\d+),(\d+)\): (.*)$/.exec(line)
      const found = m && origin.get(m[1]!)
      if (!m || !found) {
        if (line.trim() !== "") console.error(line)
        continue
      }
      const markdownLine = found.block.line + Number(m[2]) - 1 - found.offset
      console.error(`${relative(root, found.block.file)}:${markdownLine}:${m[3]} ${m[4]}`)
    }
    return 1
  } finally {
    rmSync(outDir, { recursive: true, force: true })
  }
}

if (!existsSync(join(root, "node_modules/typescript"))) throw new Error("typescript is not installed")
process.exitCode = main()
