/**
 * What importing the library loads: a program without thread workers never
 * imports the thread pool, its RPC protocol or `node:child_process`
 * (about 40 modules and a tenth of the import's time); the first node or
 * test runner with a thread worker loads them.
 */
import { assert, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Module from "node:module"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))

/** The URLs a fresh Node process loads while it imports `entry` (a path under src/). */
const loadedBy = (entry: string): ReadonlyArray<string> => {
  const script = `
    import { registerHooks } from "node:module"
    const seen = []
    registerHooks({ load(url, context, next) { seen.push(url); return next(url, context) } })
    await import(${JSON.stringify(new URL(entry, `file://${root}/`).href)})
    console.log(JSON.stringify(seen))`
  const output = ChildProcess.execFileSync(process.execPath, ["--input-type=module", "-e", script], { cwd: root, encoding: "utf8" })
  return JSON.parse(output) as ReadonlyArray<string>
}

/** What a thread pool needs and nothing else does, one pattern per kind of module. */
const threadPatterns: ReadonlyArray<RegExp> = [/\/threads\/protocol\.ts$/, /\/effect\/dist\/rpc\//, /^node:child_process$/]

const threadModules = (loaded: ReadonlyArray<string>) =>
  loaded.filter((url) => threadPatterns.some((pattern) => pattern.test(url)))

// Load hooks (`module.registerHooks`) need Node 22.15 or later.
describe.skipIf(!("registerHooks" in Module))("importing the library", () => {
  it("the index and the testing kit load no thread pool, RPC or child_process module", () => {
    for (const entry of ["src/index.ts", "src/Testing.ts"]) {
      const loaded = loadedBy(entry)
      assert.isAbove(loaded.filter((url) => url.includes("/src/")).length, 20, `${entry} loads the library`)
      assert.deepStrictEqual(threadModules(loaded), [], entry)
    }
  })

  it("the thread pool does load them: each pattern above matches a module", () => {
    const loaded = loadedBy("src/internal/threads/pool.ts")
    for (const pattern of threadPatterns) assert.isTrue(loaded.some((url) => pattern.test(url)), String(pattern))
  })
})
