import { availableParallelism } from "node:os"
import { fileURLToPath } from "node:url"
import { defineConfig } from "vitest/config"

export default defineConfig({
  // Tests import the package by name (as users do) and get its sources, not a build.
  resolve: {
    alias: [
      { find: /^effect-oban\/testing$/, replacement: fileURLToPath(new URL("./src/Testing.ts", import.meta.url)) },
      { find: /^effect-oban$/, replacement: fileURLToPath(new URL("./src/index.ts", import.meta.url)) }
    ]
  },
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["./test/support/globalSetup.ts"],
    // Test files mostly wait (on servers, processes, timers): two at once even on two cores, where
    // Vitest's default (cores - 1) would run one at a time; each file has its own schema.
    maxWorkers: Math.max(2, availableParallelism() - 1),
    testTimeout: 60_000,
    hookTimeout: 60_000
  }
})
