/**
 * Type tests (checked by `npm run typecheck`; at run time they only call
 * expectTypeOf): what a testing-kit filter's `args` may name through a worker
 * definition, for each shape of args. The run-time check of the same names is
 * in test/testing.test.ts.
 */
import { describe, expectTypeOf, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { Worker } from "effect-oban"
import * as ObanTest from "effect-oban/testing"

const Shape = Worker.make("TypedShape", {
  args: Schema.Union([
    Schema.Struct({ kind: Schema.Literal("circle"), radius: Schema.Number }),
    Schema.Struct({ kind: Schema.Literal("square"), side: Schema.Number })
  ]),
  perform: () => Effect.void
})
const Either = Worker.make("TypedEither", {
  args: Schema.Union([Schema.Struct({ a: Schema.String }), Schema.Struct({ b: Schema.String })]),
  perform: () => Effect.void
})
class SignUpArgs extends Schema.Class<SignUpArgs>("SignUpArgs")({ userId: Schema.String }) {}
const SignUp = Worker.make("TypedSignUp", { args: SignUpArgs, perform: () => Effect.void })
const Renamed = Worker.make("TypedRenamed", {
  args: Schema.Struct({ userId: Schema.String, note: Schema.String }).pipe(Schema.encodeKeys({ userId: "user_id" })),
  perform: () => Effect.void
})
const Counts = Worker.make("TypedCounts", { args: Schema.Record(Schema.String, Schema.Number), perform: () => Effect.void })
const Opaque = Worker.make("TypedOpaque", { args: Schema.Unknown, perform: () => Effect.void })

describe("a filter's args through a worker definition", () => {
  it("names the args' fields as stored, each member's for a union, and anything where they have no known shape", () => {
    // Compiled, never run.
    const filters = () => [
      ObanTest.assertEnqueued({ worker: Shape, args: { kind: "circle", radius: 2 } }),
      ObanTest.assertEnqueued({ worker: Shape, args: { side: 1 } }),
      // @ts-expect-error `radiu` is no field of any member
      ObanTest.assertEnqueued({ worker: Shape, args: { kind: "circle", radiu: 2 } }),
      ObanTest.assertEnqueued({ worker: Either, args: { b: "x" } }),
      // @ts-expect-error members that share no field still name theirs only
      ObanTest.assertEnqueued({ worker: Either, args: { zzz: "x" } }),
      ObanTest.assertEnqueued({ worker: SignUp, args: { userId: "u" } }),
      // @ts-expect-error `userid` is no field of a Class's args
      ObanTest.assertEnqueued({ worker: SignUp, args: { userid: "u" } }),
      ObanTest.assertEnqueued({ worker: Renamed, args: { user_id: "u", note: "n" } }),
      // @ts-expect-error stored as `user_id`
      ObanTest.refuteEnqueued({ worker: Renamed, args: { userId: "u" } }),
      ObanTest.assertEnqueued({ worker: Counts, args: { anything: 1 } }),
      ObanTest.assertEnqueued({ worker: Opaque, args: { anything: 1 } }),
      ObanTest.assertEnqueued({ worker: "TypedRenamed", args: { userId: "as stored or not, untyped" } })
    ]
    expectTypeOf(filters).returns.not.toBeAny()
  })
})
