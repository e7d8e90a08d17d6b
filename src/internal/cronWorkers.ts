/**
 * A start-up check of a node's crontab against its own workers and queues.
 */
import type * as Cron from "../Cron.ts"

/**
 * The crontab entries whose jobs this node would claim (their queue runs
 * here) but could not run (their worker is not among its workers): each of
 * their jobs this node takes fails as `unknown_worker`. Such an entry is not
 * refused, since during a rolling deploy other nodes may already run the
 * worker; the node warns about it.
 */
export const unrunnableCronEntries = (
  entries: ReadonlyArray<Cron.Entry>,
  workers: ReadonlySet<string>,
  queues: ReadonlySet<string>
): ReadonlyArray<Cron.Entry> =>
  entries.filter((entry) => queues.has(entry.request.queue) && !workers.has(entry.request.worker))

/** The warning for one such entry. */
export const unrunnableCronWarning = (entry: Cron.Entry, node: string): string =>
  `cron entry "${entry.name}" inserts ${entry.request.worker} jobs into queue "${entry.request.queue}", ` +
  `which node ${node} runs without that worker: each of them it claims fails as unknown_worker; ` +
  `add ${entry.request.worker} to the node's workers`
