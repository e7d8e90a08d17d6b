/**
 * Whether a queue is paused, in a word, as the CLI's `queues status` and the
 * dashboard show it: over the producers running it (`no`, `yes`, `1 of 3`,
 * `-` for none), and `kept` when it is paused for every node, so that nodes
 * that start later start it paused.
 */
export const pausedSummary = (producers: ReadonlyArray<{ readonly paused: boolean }>, kept: boolean): string => {
  const paused = producers.filter((producer) => producer.paused).length
  const onNodes = producers.length === 0
    ? "-"
    : paused === 0
    ? "no"
    : paused === producers.length
    ? "yes"
    : `${paused} of ${producers.length}`
  return !kept ? onNodes : onNodes === "-" ? "kept" : `${onNodes}, kept`
}
