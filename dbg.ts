import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Redacted, Schema, Context, Scope, Exit } from "effect"
import * as Oban from "./src/Oban.ts"
import * as Migrations from "./src/Migrations.ts"
import * as Worker from "./src/Worker.ts"
const W = Worker.make("W", { args: Schema.Struct({}), perform: () => Effect.void })
const prefix = "dbg_" + Math.random().toString(36).slice(2, 6)
const main = Effect.gen(function*() {
  yield* Migrations.run({ prefix })
  const scope = yield* Scope.make()
  console.log("building")
  const ctx = yield* Layer.buildWithScope(Oban.layer({ prefix, queues: { default: 2 }, workers: [W], shutdownGracePeriod: "1 second" }), scope)
  console.log("built")
  yield* Effect.sleep("300 millis")
  console.log("closing")
  yield* Scope.close(scope, Exit.void)
  console.log("closed")
}).pipe(Effect.provide(PgClient.layer({ url: Redacted.make("postgres://postgres@127.0.0.1:5432/test") })))
Effect.runPromise(main.pipe(Effect.timeout("10 seconds"))).then(() => console.log("done"), (e) => console.log("err", e))
