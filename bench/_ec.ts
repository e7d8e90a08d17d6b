import { NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
NodeRuntime.runMain(Effect.sync(() => { process.exitCode = 1 }))
