/**
 * The queues an operator's view lists (the CLI's `queues status`, the
 * dashboard's queues page and its live updates), with what the cluster has of
 * each: every queue with jobs, a running producer or a pause kept for nodes
 * that start later, in order of name.
 */
import type { ClusterView, ProducerInfo } from "../Cluster.ts"
import type { Counts } from "../Jobs.ts"

type States = Counts["queues"][number]["states"]

export interface QueueSummary {
  readonly queue: string
  /** Its producers on every node. */
  readonly producers: ReadonlyArray<ProducerInfo>
  /** The sum of their limits, and of the jobs they run. */
  readonly limit: number
  readonly running: number
  /** Its jobs per state; undefined when the counts have no entry for it. */
  readonly states: States | undefined
  /** When it was paused for every node, while that pause is kept. */
  readonly pausedSince: Date | undefined
}

/** The summaries of the queues in `view` and `counts` (pass no counts for the queues with producers or a kept pause only). */
export const queueSummaries = (
  view: Pick<ClusterView, "nodes" | "pausedQueues">,
  counts: Counts["queues"] = []
): ReadonlyArray<QueueSummary> => {
  const producers = new Map<string, Array<ProducerInfo>>()
  for (const node of view.nodes) {
    for (const producer of node.producers) {
      const list = producers.get(producer.queue)
      if (list === undefined) producers.set(producer.queue, [producer])
      else list.push(producer)
    }
  }
  const states = new Map(counts.map((entry) => [entry.queue, entry.states]))
  const kept = new Map(view.pausedQueues.map((entry) => [entry.queue, entry.since]))
  const names = Array.from(new Set([...states.keys(), ...producers.keys(), ...kept.keys()])).sort()
  return names.map((queue) => {
    const mine = producers.get(queue) ?? []
    return {
      queue,
      producers: mine,
      limit: mine.reduce((sum, producer) => sum + producer.limit, 0),
      running: mine.reduce((sum, producer) => sum + producer.running, 0),
      states: states.get(queue),
      pausedSince: kept.get(queue)
    }
  })
}
