#!/usr/bin/env node
// The effect-oban command line. From an installed package it runs the build
// (dist/cli/main.js); in a checkout of the repository, where dist/ may be
// missing or stale, it runs the TypeScript sources (Node 22.18+ runs them as is).
import { existsSync } from "node:fs"
import module from "node:module"
import { fileURLToPath } from "node:url"

const source = new URL("../src/cli/main.ts", import.meta.url)
const build = new URL("../dist/cli/main.js", import.meta.url)
const installed = /[\\/]node_modules[\\/]/.test(fileURLToPath(import.meta.url))
const [major, minor] = process.versions.node.split(".").map(Number)
// Node runs TypeScript without flags from 22.18 (and 23.6).
const runsTypeScript = major > 23 || (major === 23 && minor >= 6) || (major === 22 && minor >= 18)

/** Runs the sources of a checkout or the build, or says why neither can run. */
const run = async () => {
  if (!installed && runsTypeScript && existsSync(source)) {
    await import(source.href)
  } else if (existsSync(build)) {
    await import(build.href)
  } else if (!installed && existsSync(source)) {
    console.error(
      `effect-oban: running the sources of a checkout needs Node.js 22.18+ or 23.6+ (this is ${process.versions.node}); ` +
        "run `npm run build` first, or use a newer Node.js"
    )
    process.exitCode = 1
  } else {
    console.error("effect-oban: dist/cli/main.js is missing; run `npm run build` first")
    process.exitCode = 1
  }
}

if (major < 22) {
  // Said plainly: the build would fail on a missing API, the sources with ERR_UNKNOWN_FILE_EXTENSION.
  console.error(`effect-oban: needs Node.js 22 or newer; this is Node.js ${process.versions.node}`)
  process.exitCode = 1
} else {
  // Node's compile cache (22.1+): the code of the CLI's few hundred modules is compiled once and
  // kept on disk (node-compile-cache in the OS temp directory), so later commands start about a
  // quarter sooner. NODE_DISABLE_COMPILE_CACHE=1 turns it off; a directory it cannot write is skipped.
  module.enableCompileCache?.()
  await run()
}
