/**
 * The top-level field names of a worker's args as its schema stores them
 * (after any `encodeKeys`): what `unique.keys` and the testing kit's args
 * filters may name. Known only for args that are stored as a struct (no
 * index signature); `undefined` otherwise (any name may then be there).
 */
import type * as Schema from "effect/Schema"
import * as SchemaAST from "effect/SchemaAST"

/** The stored field names of `codec`'s encoded side, when it is a struct. */
export const storedFields = (codec: Schema.Top): ReadonlyArray<string> | undefined => {
  const encoded = SchemaAST.toEncoded(codec.ast)
  if (!SchemaAST.isObjects(encoded) || encoded.indexSignatures.length > 0) return undefined
  return encoded.propertySignatures.flatMap((property) => typeof property.name === "string" ? [property.name] : [])
}

/**
 * The stored fields of the workers' args, by the `decodeArgs` function their
 * requests carry (one per worker), worked out on first use.
 */
const byDecoder = new WeakMap<object, () => ReadonlyArray<string> | undefined>()

/** Makes the stored fields of `codec` known for the requests that carry `decodeArgs`. */
export const registerStoredFields = (decodeArgs: object, codec: Schema.Top): void => {
  let fields: { readonly value: ReadonlyArray<string> | undefined } | undefined
  byDecoder.set(decodeArgs, () => (fields ??= { value: storedFields(codec) }).value)
}

/** The stored fields of a request's args, when its worker's schema says them (see `storedFields`). */
export const storedFieldsOf = (request: { readonly decodeArgs?: unknown }): ReadonlyArray<string> | undefined => {
  const decodeArgs = request.decodeArgs
  return typeof decodeArgs === "function" ? byDecoder.get(decodeArgs)?.() : undefined
}
