/**
 * Starts one PostgreSQL server for the whole test run (or uses DATABASE_URL)
 * and hands its URL to every test file through `inject("databaseUrl")`.
 */
import type { TestProject } from "vitest/node"
import { startDatabase } from "../../support/database.ts"

declare module "vitest" {
  export interface ProvidedContext {
    databaseUrl: string
  }
}

export default async function setup(project: TestProject) {
  const database = await startDatabase()
  project.provide("databaseUrl", database.url)
  return async () => {
    await database.stop()
  }
}
