/**
 * A thread worker that starts a node where it runs, as a worker module that
 * starts the application when imported would, for test/threadProcesses.test.ts.
 * Its result says whether that node started or what refused it.
 */
import { PgClient } from "@effect/sql-pg"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Oban from "../../src/Oban.ts"
import * as Worker from "../../src/Worker.ts"

export const NestedNode = Worker.make("ThreadNestedNode", {
  args: Schema.Struct({ url: Schema.String, prefix: Schema.String }),
  result: Schema.Struct({ started: Schema.Boolean, refused: Schema.NullOr(Schema.String) }),
  queue: "nested",
  maxAttempts: 1,
  threads: { module: import.meta.url },
  perform: (job) =>
    Layer.build(Oban.layer({ prefix: job.args.prefix, queues: { elsewhere: 1 }, workers: [] })).pipe(
      Effect.as({ started: true, refused: null }),
      Effect.catch((error) => Effect.succeed({ started: false, refused: `${error._tag}: ${error.message}` })),
      Effect.scoped,
      Effect.provide(PgClient.layer({ url: Redacted.make(job.args.url), maxConnections: 2 }))
    )
})
