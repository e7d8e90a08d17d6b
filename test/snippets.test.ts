import { describe, expect, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

const check = (markdown: string) => {
  const file = join(mkdtempSync(join(tmpdir(), "snippets-")), "guide.md")
  writeFileSync(file, markdown)
  const run = spawnSync(process.execPath, ["scripts/checkSnippets.ts", file], { encoding: "utf8" })
  return { status: run.status, output: run.stdout + run.stderr }
}

describe("docs snippets check", () => {
  it("fails on a block that does not type-check, naming its markdown line", () => {
    const result = check([
      "# Guide",
      "",
      "```ts gen",
      "yield* Oban.insert(SendWelcome.job({ userId: 42 }))",
      "```",
      ""
    ].join("\n"))
    expect(result.status).toBe(1)
    expect(result.output).toMatch(/guide\.md:4:\d+ error TS2322/)
  }, 60_000)

  it("passes blocks that use the library, the snippets' world and a generator body", () => {
    const result = check([
      "```ts",
      "import { Oban } from \"effect-oban\"",
      "export const insertOne = Oban.insert(SendWelcome.job({ userId: \"u1\" }))",
      "```",
      "",
      "```ts gen",
      "const job = yield* Oban.insert(SendWelcome.job({ userId: \"u1\" }, { scheduleIn: \"1 hour\" }))",
      "console.log(job.id)",
      "```"
    ].join("\n"))
    expect(result.output).toContain("2 TypeScript blocks type-check")
    expect(result.status).toBe(0)
  }, 60_000)
})
