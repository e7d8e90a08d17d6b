#!/usr/bin/env node
// The effect-oban command line. From an installed package it runs the build
// (dist/cli/main.js); in a checkout of the repository, where dist/ may be
// missing or stale, it runs the TypeScript sources (Node 22.18+ runs them as is).
import { existsSync } from "node:fs"
import { fileURLToPath } from "node:url"

const source = new URL("../src/cli/main.ts", import.meta.url)
const build = new URL("../dist/cli/main.js", import.meta.url)
const installed = fileURLToPath(import.meta.url).includes("/node_modules/")

if (!installed && existsSync(source)) {
  await import(source.href)
} else if (existsSync(build)) {
  await import(build.href)
} else {
  console.error("effect-oban: dist/cli/main.js is missing; run `npm run build` first")
  process.exitCode = 1
}
