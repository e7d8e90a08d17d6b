/**
 * The PostgreSQL server behind this repository's tests, demo and benchmarks:
 * the same one the testing kit offers users (`startDatabase` in
 * `effect-oban/testing`).
 */
export { type Database, startDatabase, type StartOptions } from "../src/internal/embeddedPostgres.ts"
