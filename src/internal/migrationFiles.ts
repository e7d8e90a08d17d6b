/**
 * Reads the migration scripts shipped in `migrations/NNNN_name.sql`. Each has
 * a `-- migrate:up` and a `-- migrate:down` section and uses `{{prefix}}` for
 * the quoted schema name.
 */
import * as Effect from "effect/Effect"
import { readdirSync, readFileSync } from "node:fs"
import { MigrationError } from "../Errors.ts"

export interface MigrationFile {
  readonly version: number
  readonly name: string
  readonly up: string
  readonly down: string
}

const directory = new URL("../../migrations/", import.meta.url)
const fileName = /^(\d{4})_([a-z0-9_]+)\.sql$/

const parse = (file: string, text: string): MigrationFile => {
  const match = fileName.exec(file)!
  const upAt = text.indexOf("-- migrate:up")
  const downAt = text.indexOf("-- migrate:down")
  if (upAt === -1 || downAt === -1 || downAt < upAt) {
    throw new Error(`${file}: needs a "-- migrate:up" section followed by a "-- migrate:down" section`)
  }
  return {
    version: Number(match[1]),
    name: match[2]!,
    up: text.slice(upAt + "-- migrate:up".length, downAt).trim(),
    down: text.slice(downAt + "-- migrate:down".length).trim()
  }
}

const load = (): ReadonlyArray<MigrationFile> => {
  const files = readdirSync(directory).filter((file) => fileName.test(file)).sort()
  const migrations = files.map((file) => parse(file, readFileSync(new URL(file, directory), "utf8")))
  migrations.forEach((migration, index) => {
    if (migration.version !== index + 1) {
      throw new Error(`migration versions must run 1, 2, 3, ... without gaps; found ${migration.version} at position ${index + 1}`)
    }
  })
  return migrations
}

let cached: ReadonlyArray<MigrationFile> | undefined

/** All migrations, in version order. Read once per process. */
export const migrationFiles: Effect.Effect<ReadonlyArray<MigrationFile>, MigrationError> = Effect.suspend(() => {
  if (cached !== undefined) return Effect.succeed(cached)
  return Effect.try({
    try: () => (cached = load()),
    catch: (cause) => new MigrationError({ message: `cannot read migrations: ${String(cause)}`, cause })
  })
})

/** Replaces the prefix placeholder with the quoted schema name. */
export const withPrefix = (text: string, prefix: string): string => text.replaceAll("{{prefix}}", `"${prefix}"`)

/** Whether `to` names a version a run or a rollback can stop at: 0 (no tables) to `latest`. */
export const isTarget = (to: number, latest: number): boolean => Number.isInteger(to) && to >= 0 && to <= latest
