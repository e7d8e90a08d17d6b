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
    testTimeout: 60_000,
    hookTimeout: 60_000
  }
})
