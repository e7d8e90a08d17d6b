/**
 * Query plans for tests: EXPLAIN a library statement as the library would run
 * it (custom plan, or the generic plan a prepared statement may switch to),
 * and flatten the plan tree into its nodes.
 */
import { Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import type { Statement } from "effect/sql/Statement"

/** One node of a JSON plan, with the fields the tests read. */
export interface PlanNode {
  readonly "Node Type": string
  readonly "Relation Name"?: string
  readonly "Index Name"?: string
  readonly "Actual Rows"?: number
  readonly "Actual Loops"?: number
  readonly Plans?: ReadonlyArray<PlanNode>
}

const flatten = (node: PlanNode): ReadonlyArray<PlanNode> => [node, ...(node.Plans ?? []).flatMap(flatten)]

const parse = (rows: ReadonlyArray<Record<string, unknown>>): ReadonlyArray<PlanNode> => {
  const raw = rows[0]?.["QUERY PLAN"]
  const json = (typeof raw === "string" ? JSON.parse(raw) : raw) as ReadonlyArray<{ readonly Plan: PlanNode }>
  return flatten(json[0]!.Plan)
}

/** EXPLAIN (with ANALYZE when asked) of `statement` with its parameters bound: the custom plan. */
export const explain = <A>(statement: Statement<A>, options: { readonly analyze?: boolean } = {}) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [text, params] = statement.compile()
    const rows = yield* sql.unsafe<Record<string, unknown>>(
      `EXPLAIN (${options.analyze === true ? "ANALYZE, " : ""}FORMAT JSON) ${text}`,
      params
    )
    return parse(rows)
  })

const literal = (param: unknown): string => {
  if (typeof param === "number" && Number.isFinite(param)) return String(param)
  if (typeof param === "string") return `'${param.replace(/'/g, "''")}'`
  throw new Error(`no literal for parameter ${String(param)}`)
}

/**
 * The generic plan of `statement`: prepared by name and explained with
 * `plan_cache_mode = force_generic_plan`, as PostgreSQL may plan a statement
 * the client has prepared once it has run a few times.
 */
export const explainGeneric = <A>(statement: Statement<A>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const [text, params] = statement.compile()
    // Prepared statements outlive a rollback: a fresh name each time.
    const name = `oban_plan_probe_${Math.random().toString(36).slice(2, 10)}`
    return yield* Effect.gen(function*() {
      yield* sql.unsafe("SET LOCAL plan_cache_mode = force_generic_plan")
      yield* sql.unsafe(`PREPARE ${name} AS ${text}`)
      const rows = yield* sql.unsafe<Record<string, unknown>>(
        `EXPLAIN (FORMAT JSON) EXECUTE ${name}(${params.map(literal).join(", ")})`
      ).pipe(Effect.ensuring(Effect.ignore(sql.unsafe(`DEALLOCATE ${name}`))))
      return parse(rows)
    }).pipe(sql.withTransaction)
  })

/** Scans of `relation` in the plan. */
export const scansOf = (nodes: ReadonlyArray<PlanNode>, relation: string): ReadonlyArray<PlanNode> =>
  nodes.filter((node) => node["Relation Name"] === relation)
