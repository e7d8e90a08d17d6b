/**
 * A workflow step's options read as plain JavaScript: TypeScript checks an
 * object literal given to `add`, not options built elsewhere or passed from
 * JavaScript, and a misspelt `deps` would insert a step that waits for
 * nothing. What is wrong is kept on the step, and the insert refuses it.
 */
import { unknownKey } from "./optionKeys.ts"

const stepOptionKeys = ["deps"]
const depKeys = ["step", "onFailure"]

/** What is wrong with a step's options; undefined when they are fine. */
export const stepOptionsProblem = (options: unknown): string | undefined => {
  if (options === undefined || options === null) return undefined
  if (typeof options !== "object" || Array.isArray(options)) {
    return `a step's options are an object ({ deps }), got ${Array.isArray(options) ? "an array" : typeof options}`
  }
  const unknown = unknownKey(options, stepOptionKeys, "the step's options")
  if (unknown !== undefined) return unknown.message
  const deps = (options as { readonly deps?: unknown }).deps
  if (deps === undefined) return undefined
  if (!Array.isArray(deps)) return `deps is a list of step names or { step, onFailure }, got ${typeof deps}`
  for (const dep of deps) {
    if (typeof dep === "string") continue
    if (typeof dep !== "object" || dep === null) return `a dependency is a step name or { step, onFailure }, got ${dep === null ? "null" : typeof dep}`
    const problem = unknownKey(dep, depKeys, "a dependency")
    if (problem !== undefined) return problem.message
  }
  return undefined
}
