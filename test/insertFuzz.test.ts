/**
 * Property-based fuzz of the insert API. Each generated request marks which of
 * its fields it made bad. A batch with no bad request must insert and read
 * back exactly what the worker's schema encoded (args, meta, tags, names,
 * times to the millisecond); any other batch must fail with `InvalidJobError`
 * naming a bad field of its first bad request, before any SQL, writing
 * nothing. No input may end in a defect or a raw `SqlError`.
 */
import { assert, layer } from "@effect/vitest"
import { Arbitrary, Cause, DateTime, Effect, Exit, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import type { JobField } from "../src/Errors.ts"
import type { Job } from "../src/Job.ts"
import type { Inserted } from "../src/Oban.ts"
import * as Oban from "../src/Oban.ts"
import * as Worker from "../src/Worker.ts"
import { testLayer, uniquePrefix } from "./support/db.ts"
import { jsonRoundTrip } from "./support/json.ts"

const prefix = uniquePrefix("insert_fuzz")

/** A generated value and whether the insert must refuse it. */
interface Gen<A = unknown> {
  readonly value: A
  readonly bad: boolean
}

const good = <A>(value: A): Gen<A> => ({ value, bad: false })
const bad = <A>(value: A): Gen<A> => ({ value, bad: true })

const below = (n: number) => Arbitrary.schema(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: n - 1 })))

/** One of `options`, each built lazily so every run gets fresh objects. */
const oneOf = <A>(options: ReadonlyArray<Arbitrary.Arbitrary<A>>): Arbitrary.Arbitrary<A> =>
  below(options.length).pipe(Arbitrary.flatMap((i) => options[i]!))

/** Mostly (92%) one of `goods`, else one of `bads`: a request is then often good in every field. */
const mostly = <A>(
  goods: ReadonlyArray<Arbitrary.Arbitrary<A>>,
  bads: ReadonlyArray<Arbitrary.Arbitrary<A>>
): Arbitrary.Arbitrary<A> => below(100).pipe(Arbitrary.flatMap((i) => i < 92 ? oneOf(goods) : oneOf(bads)))

const fresh = <A>(make: () => A): Arbitrary.Arbitrary<A> => Arbitrary.Constant(0).pipe(Arbitrary.map(make))

/** Pieces of text PostgreSQL and JSON must keep as they are, including a literal backslash-u0000. */
const goodPieces = ["a", "Z", "0", " ", "\\", "u", "\"", "{", "}", ",", "é", "中", "😀", "\t", "\n", "\u0001", "\\u0000", "\\ud800", "NULL"]
const badPieces = ["\u0000", "\ud800", "\udc00", "\udbff"]

const goodText = (min: number, max: number) =>
  Arbitrary.array(below(goodPieces.length), { minLength: min, maxLength: max }).pipe(
    Arbitrary.map((indexes) => indexes.map((i) => goodPieces[i]).join(""))
  )

/** Good text with one piece PostgreSQL cannot store (NUL or a lone surrogate) in it. */
const badText = Arbitrary.all([goodText(0, 4), below(badPieces.length), goodText(0, 4)]).pipe(
  Arbitrary.map(([before, i, after]) => before + badPieces[i] + after)
)

/**
 * Names are limited to 128 characters (code points), whatever their UTF-16
 * length; a queue's name may not start or end with whitespace (`queue`).
 */
const name = (fallback: string, queue = false): Arbitrary.Arbitrary<Gen> =>
  mostly<Gen>([
    goodText(1, 6).pipe(Arbitrary.map((text) => queue && /\s$/.test(text) ? bad(fallback + text) : good(fallback + text))),
    fresh(() => good("😀".repeat(128))),
    fresh(() => good("q".repeat(128)))
  ], [
    fresh(() => bad("😀".repeat(129))),
    fresh(() => bad("q".repeat(129))),
    fresh(() => bad("")),
    badText.pipe(Arbitrary.map(bad)),
    fresh(() => bad(42)),
    fresh(() => bad(["q"])),
    fresh(() => bad({ toString: () => "q" })),
    ...(queue ? [fresh(() => bad(" q")), fresh(() => bad("q\n"))] : [])
  ])

/** Given with probability `given`, else absent. */
const optional = (arbitrary: Arbitrary.Arbitrary<Gen>, given = 0.5): Arbitrary.Arbitrary<Gen> =>
  below(100).pipe(Arbitrary.flatMap((i) => i < given * 100 ? arbitrary : fresh(() => good(undefined))))

const integerField = (min: number, max: number) =>
  optional(mostly<Gen>([
    Arbitrary.schema(Schema.Int.check(Schema.isBetween({ minimum: min, maximum: max }))).pipe(Arbitrary.map(good)),
    fresh(() => good(min)),
    fresh(() => good(max))
  ], [
    fresh(() => bad(min - 1)),
    fresh(() => bad(max + 1)),
    fresh(() => bad(min + 0.5)),
    fresh(() => bad(Number.NaN)),
    fresh(() => bad(Infinity)),
    fresh(() => bad(String(min))),
    fresh(() => bad(BigInt(min))),
    fresh(() => bad(Object.create(null)))
  ]))

/** Good JSON values, nested up to `depth` levels. */
const jsonValue = (depth: number): Arbitrary.Arbitrary<unknown> => {
  const leaves: ReadonlyArray<Arbitrary.Arbitrary<unknown>> = [
    fresh(() => null),
    fresh(() => true),
    Arbitrary.schema(Schema.Int),
    oneOf([0.1, -0, 1e308, 5e-324, Number.MAX_SAFE_INTEGER, -1.5e-7].map((n) => fresh(() => n))),
    goodText(0, 8)
  ]
  if (depth === 0) return oneOf(leaves)
  const key = oneOf<string>([goodText(0, 4), ...["__proto__", "toJSON", "constructor", ""].map((k) => fresh(() => k))])
  return oneOf([
    ...leaves,
    Arbitrary.array(jsonValue(depth - 1), { maxLength: 4 }),
    Arbitrary.array(Arbitrary.all([key, jsonValue(depth - 1)]), { maxLength: 4 }).pipe(
      Arbitrary.map((entries) => Object.fromEntries(entries))
    )
  ])
}

const throwingGetter = () =>
  Object.defineProperty({}, "x", {
    enumerable: true,
    get() {
      throw new Error("getter")
    }
  })
const throwingProxy = () =>
  new Proxy({}, {
    get() {
      throw new Error("proxy")
    },
    ownKeys() {
      throw new Error("proxy")
    }
  })
const cycle = () => {
  const a: Record<string, unknown> = {}
  a["self"] = a
  return a
}
const nested = (levels: number) => {
  let value: unknown = 1
  for (let i = 0; i < levels; i++) value = [value]
  return value
}
class Point {
  readonly x = 1
}

/** Values JSON would change or PostgreSQL refuse, placed inside a plain object. */
const badJson: ReadonlyArray<Arbitrary.Arbitrary<unknown>> = [
  ...[
    () => Number.NaN,
    () => -Infinity,
    () => undefined,
    () => () => 1,
    () => 1n,
    () => Symbol("s"),
    () => new Date(0),
    () => new Map([["a", 1]]),
    () => new Number(1),
    () => new Point(),
    () => ({ toJSON: () => "x" }),
    () => [1, , 3],
    cycle,
    throwingGetter,
    throwingProxy,
    () => nested(1001)
  ].map((make) => fresh(() => ({ k: make() }))),
  badText.pipe(Arbitrary.map((text) => ({ k: text }))),
  badText.pipe(Arbitrary.map((text) => ({ [text]: 1 })))
]

const meta = optional(mostly<Gen>([
  Arbitrary.array(Arbitrary.all([goodText(1, 4), jsonValue(2)]), { maxLength: 4 }).pipe(
    Arbitrary.map((entries) => good(Object.fromEntries(entries)))
  ),
  fresh(() => good({ traceparent: "mine", n: 1 })),
  fresh(() => good({ big: "m".repeat(64 * 1024 - 10) }))
], [
  fresh(() => bad({ big: "m".repeat(64 * 1024) })),
  ...[() => new Date(0), () => new Map(), () => new Boolean(true), () => [], () => null, () => "meta", () => 1]
    .map((make) => fresh(() => bad(make()))),
  ...badJson.map((arbitrary) => arbitrary.pipe(Arbitrary.map(bad)))
]))

const tags = optional(mostly<Gen>([
  Arbitrary.array(goodText(1, 5), { maxLength: 4 }).pipe(Arbitrary.map(good)),
  fresh(() => good(["t".repeat(255), "😀".repeat(255)]))
], [
  fresh(() => bad(["t".repeat(256)])),
  fresh(() => bad([""])),
  fresh(() => bad("email")),
  fresh(() => bad(["a", , "c"])),
  fresh(() => bad([1])),
  fresh(() => bad(null)),
  badText.pipe(Arbitrary.map((text) => bad([text])))
]))

const year = 365.25 * 86_400_000

/** `scheduleIn` inputs and the whole milliseconds they mean. */
const scheduleIn = optional(mostly<Gen>([
  Arbitrary.schema(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 10 ** 12 }))).pipe(Arbitrary.map(good)),
  ...[0, 1000 * year, "5 minutes", "2 days", 1_000_000_000n, [3, 0], { hours: 1, seconds: 2 }]
    .map((input) => fresh(() => good(input)))
], [
  ...[-1, 1000 * year + 1, Number.NaN, Infinity, "Infinity", "NaN millis", "soon", [Number.NaN, 0], { seconds: Number.NaN }, {
    seconds: "5"
  }, { secs: 5 }, null, 10n ** 30n].map((input) => fresh(() => bad(input)))
]), 0.3)

const scheduledAt = optional(mostly<Gen>([
  Arbitrary.schema(
    Schema.Int.check(Schema.isBetween({ minimum: Date.parse("0001-01-01T00:00:00Z"), maximum: Date.parse("9999-12-31T23:59:59.999Z") }))
  ).pipe(Arbitrary.map((millis) => good(new Date(millis)))),
  ...["0001-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z"].map((iso) => fresh(() => good(new Date(iso)))),
  fresh(() => good(DateTime.makeUnsafe(Date.parse("2031-05-06T07:08:09.123Z"))))
], [
  ...[Date.parse("0001-01-01T00:00:00.000Z") - 1, Date.parse("9999-12-31T23:59:59.999Z") + 1, Number.NaN, 8.64e15]
    .map((millis) => fresh(() => bad(new Date(millis)))),
  ...["2030-01-01", 0].map((value) => fresh(() => bad(value)))
]), 0.2)

const workers = {
  json: Worker.make("FuzzJson", { args: Schema.Json, perform: () => Effect.void }),
  none: Worker.make("FuzzNone", { args: Schema.Void, perform: () => Effect.void }),
  nullable: Worker.make("FuzzNullable", { args: Schema.NullOr(Schema.String), perform: () => Effect.void }),
  struct: Worker.make("FuzzStruct", { args: Schema.Struct({ to: Schema.String, at: Schema.Date }), perform: () => Effect.void })
}
type Kind = keyof typeof workers

const args = mostly<Gen<{ readonly kind: Kind; readonly args: unknown }>>([
  jsonValue(3).pipe(Arbitrary.map((value) => good({ kind: "json" as const, args: value }))),
  fresh(() => good({ kind: "none" as const, args: undefined })),
  fresh(() => good({ kind: "nullable" as const, args: null })),
  goodText(0, 5).pipe(Arbitrary.map((text) => good({ kind: "nullable" as const, args: text }))),
  fresh(() => good({ kind: "struct" as const, args: { to: "a", at: new Date(1234) } }))
], [
  fresh(() => bad({ kind: "json" as const, args: "a".repeat(1024 * 1024) })),
  badText.pipe(Arbitrary.map((text) => bad({ kind: "nullable" as const, args: text }))),
  ...badJson.map((arbitrary) => arbitrary.pipe(Arbitrary.map((value) => bad({ kind: "json" as const, args: value })))),
  fresh(() => bad({ kind: "struct" as const, args: throwingProxy() })),
  fresh(() => bad({ kind: "struct" as const, args: { to: "a", get at(): Date {
    throw new Error("getter")
  } } }))
])

const spec = Arbitrary.all({
  worker: name("W"),
  queue: optional(name("q", true)),
  priority: integerField(0, 9),
  maxAttempts: integerField(1, 32767),
  scheduleIn,
  scheduledAt,
  tags,
  meta,
  args
})
type Spec = typeof spec extends Arbitrary.Arbitrary<infer A> ? A : never

const badFields = (s: Spec): ReadonlyArray<JobField> => {
  const fields: Array<JobField> = []
  for (const field of ["worker", "queue", "priority", "maxAttempts", "scheduleIn", "scheduledAt", "tags", "meta", "args"] as const) {
    if (s[field].bad) fields.push(field)
  }
  if (s.scheduleIn.value !== undefined && s.scheduledAt.value !== undefined) fields.push("scheduleIn")
  return fields
}

const request = (s: Spec): Worker.JobRequest => {
  const worker = workers[s.args.value.kind] as Worker.Worker<string, unknown>
  const options: Record<string, unknown> = {}
  for (const field of ["queue", "priority", "maxAttempts", "scheduleIn", "scheduledAt", "tags", "meta"] as const) {
    if (s[field].value !== undefined) options[field] = s[field].value
  }
  return { ...worker.job(s.args.value.args, options as Worker.JobOptions), worker: s.worker.value as string }
}

const expectedArgs = (s: Spec): unknown => {
  const { args, kind } = s.args.value
  switch (kind) {
    case "json":
      return jsonRoundTrip(args)
    case "none":
      return null
    case "nullable":
      return args
    case "struct":
      return { to: "a", at: new Date(1234).toISOString() }
  }
}

const expectedDelay = (input: unknown): number | undefined => {
  if (typeof input === "number") return input
  if (typeof input === "bigint") return Number(input) / 1e6
  if (input === "5 minutes") return 300_000
  if (input === "2 days") return 172_800_000
  if (Array.isArray(input)) return 3000
  if (typeof input === "object" && input !== null) return 3_602_000
  return undefined
}

const toDate = (at: unknown): Date => DateTime.isDateTime(at) ? DateTime.toDate(at) : at as Date

/** The job as stored (read again, not from RETURNING) matches the request exactly. */
const assertStored = (s: Spec, job: Job, trace: string) => {
  assert.strictEqual(job.worker, s.worker.value)
  assert.strictEqual(job.queue, s.queue.value ?? "default")
  assert.strictEqual(job.priority, s.priority.value ?? 0)
  assert.strictEqual(job.maxAttempts, s.maxAttempts.value ?? 20)
  assert.deepStrictEqual(job.tags, s.tags.value ?? [])
  assert.deepStrictEqual(job.args, expectedArgs(s))
  const given = (s.meta.value ?? {}) as Record<string, unknown>
  // The insert ran in a span (`inSpan`): its traceparent is added beside the request's own meta, unless that has one.
  assert.deepStrictEqual(job.meta, "traceparent" in given ? given : { ...(jsonRoundTrip(given) as Record<string, unknown>), traceparent: trace })
  if (s.scheduledAt.value !== undefined) {
    assert.strictEqual(job.scheduledAt.getTime(), toDate(s.scheduledAt.value).getTime())
  } else {
    const delay = expectedDelay(s.scheduleIn.value) ?? 0
    assert.strictEqual(job.scheduledAt.getTime() - job.insertedAt.getTime(), delay)
  }
}

const countJobs = Effect.gen(function*() {
  const sql = yield* SqlClient
  const [row] = yield* sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM ${sql(prefix)}.oban_jobs_all`
  return row!.n
})

/**
 * Runs `insert` in a span of its own, with that span's traceparent: under the native tracer (no
 * backend) the insert makes no span, and its jobs carry the caller's.
 */
const inSpan = <A, E, R>(insert: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const span = yield* Effect.currentSpan
    return [yield* insert, `00-${span.traceId}-${span.spanId}-01`] as const
  }).pipe(Effect.withSpan("fuzz.insert"))

/** Reads the jobs of `specs` back by id, checks every field, and that the insert returned exactly them. */
const verify = (specs: ReadonlyArray<Spec>, [jobs, trace]: readonly [ReadonlyArray<Inserted>, string]) =>
  Effect.gen(function*() {
    assert.strictEqual(jobs.length, specs.length)
    const stored = yield* Effect.forEach(jobs, (job) => Oban.getJob(job.id), { concurrency: 4 })
    specs.forEach((s, i) => {
      const job = stored[i]!
      assert.isTrue(job._tag === "Some", "inserted job is stored")
      if (job._tag === "Some") {
        assertStored(s, job.value, trace)
        // The returned job, built from the request and the insert's RETURNING, is the stored one (not a
        // conflict), but for its args: those are the request's own, typed by the worker.
        assert.deepStrictEqual(jobs[i], { ...job.value, args: s.args.value.args, conflict: false })
      }
    })
  })

layer(testLayer(prefix), { excludeTestServices: true })("insert fuzz", (it) => {
  it.effect.prop(
    "every request is stored exactly or refused with InvalidJobError before any SQL",
    [below(12).pipe(Arbitrary.flatMap((n) => Arbitrary.array(spec, { minLength: n + 1, maxLength: n + 1 })))],
    ([specs]) =>
      Effect.gen(function*() {
        const before = yield* countJobs
        const firstBad = specs.findIndex((s) => badFields(s).length > 0)
        const single = specs.length === 1
        const exit = yield* Effect.exit(inSpan(
          single ? Effect.map(Oban.insert(request(specs[0]!)), (job) => [job]) : Oban.insertAll(specs.map(request))
        ))
        if (Exit.isFailure(exit)) {
          const error = Cause.squash(exit.cause)
          assert.isTrue(
            Cause.hasFails(exit.cause) && error instanceof Error && "_tag" in error && error._tag === "InvalidJobError",
            `expected InvalidJobError, got ${Cause.pretty(exit.cause)}`
          )
          assert.notStrictEqual(firstBad, -1, `a good batch was refused: ${Cause.pretty(exit.cause)}`)
          const invalid = error as unknown as { field: JobField; index?: number; message: string }
          assert.include(badFields(specs[firstBad]!), invalid.field, invalid.message)
          assert.strictEqual(invalid.index, single ? undefined : firstBad)
          assert.strictEqual(yield* countJobs, before, "a refused batch writes nothing")
          // The good requests of a refused batch still insert on their own.
          const goodSpecs = specs.filter((s) => badFields(s).length === 0)
          if (goodSpecs.length > 0) yield* verify(goodSpecs, yield* inSpan(Oban.insertAll(goodSpecs.map(request))))
        } else {
          if (firstBad !== -1) assert.fail(`bad request ${firstBad} was accepted: ${badFields(specs[firstBad]!).join(", ")}`)
          yield* verify(specs, exit.value)
        }
      }),
    { timeout: 60_000, arbitrary: { runs: 300, seed: 20260101 } }
  )
})
