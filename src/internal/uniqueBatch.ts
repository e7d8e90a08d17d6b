/**
 * Unique requests of one insert, merged by key and cut into runs that
 * replace the same fields, so that no statement meets a key twice
 * (PostgreSQL refuses an `ON CONFLICT DO UPDATE` that would change one row
 * twice) and each statement has one SET list. The runs follow key order
 * across the whole call, so that concurrent calls over overlapping keys lock
 * them in one order and cannot deadlock, whatever fields each replaces.
 *
 * Duplicates of a key behave as if inserted one after the other: the first
 * is inserted (or conflicts with an existing job) and the later ones
 * conflict with it. So the merged request is the first, with each field
 * that a later duplicate replaces taken from the last one that replaces it,
 * and replaces the union of their fields.
 */
import type { ReplaceField } from "../Worker.ts"
import type { EncodedRequest } from "./encodeRequest.ts"

/** The requests of one key. */
export interface Slot {
  /** The position of the first request, the one that is inserted. */
  readonly position: number
  /** The positions of the later requests, which share its job as conflicts. */
  readonly duplicates: Array<number>
  request: EncodedRequest
}

/** `request` with the fields `later` replaces taken from `later`, replacing the union of both sets. */
const mergeInto = (request: EncodedRequest, later: EncodedRequest): EncodedRequest => {
  const replaced = later.unique!.replace
  if (replaced.length === 0) return request
  const merged: { -readonly [K in keyof EncodedRequest]: EncodedRequest[K] } = { ...request }
  for (const field of replaced) {
    switch (field) {
      case "args":
        merged.args = later.args
        break
      case "meta":
        merged.meta = later.meta
        break
      case "tags":
        merged.tags = later.tags
        break
      case "priority":
        merged.priority = later.priority
        break
      case "maxAttempts":
        merged.maxAttempts = later.maxAttempts
        break
      case "scheduledAt":
        merged.scheduleIn = later.scheduleIn
        merged.scheduledAt = later.scheduledAt
        break
    }
  }
  const union = new Set<ReplaceField>([...request.unique!.replace, ...replaced])
  merged.unique = { ...request.unique!, replace: [...union].sort() }
  return merged
}

/**
 * The unique requests among `encoded`, one slot per key, in key order, cut
 * into runs of consecutive keys that replace the same fields: one statement
 * each, executed in this order.
 */
export const groupUnique = (encoded: ReadonlyArray<EncodedRequest>): ReadonlyArray<ReadonlyArray<Slot>> => {
  const slots = new Map<string, Slot>()
  for (let position = 0; position < encoded.length; position++) {
    const request = encoded[position]!
    if (request.unique === undefined) continue
    const slot = slots.get(request.unique.hash)
    if (slot === undefined) {
      slots.set(request.unique.hash, { position, duplicates: [], request })
    } else {
      slot.duplicates.push(position)
      slot.request = mergeInto(slot.request, request)
    }
  }
  // Hex hashes of one length: code-unit order is the "C" collation order the statement sorts by.
  const ordered = [...slots.values()].sort((a, b) => a.request.unique!.hash < b.request.unique!.hash ? -1 : 1)
  const runs: Array<Array<Slot>> = []
  let signature: string | undefined
  for (const slot of ordered) {
    const replace = slot.request.unique!.replace.join(",")
    if (replace === signature) runs[runs.length - 1]!.push(slot)
    else runs.push([slot])
    signature = replace
  }
  return runs
}
