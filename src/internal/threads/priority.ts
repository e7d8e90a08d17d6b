/**
 * The scheduling priority of a node's worker threads and processes. They run
 * with a higher nice value than the node (10 by default), so that on a busy
 * machine the node's own event loop — heartbeats, the leader's lease, fetches,
 * short jobs on the main thread — is scheduled before CPU-bound thread jobs,
 * which lose little: they still get every core nobody else wants.
 *
 * Linux keeps the nice value per thread, so a worker thread lowers its own
 * (`os.setPriority` with no pid changes the calling thread there). Elsewhere
 * the same call would lower the whole process, node included, so worker
 * threads keep the node's priority; a child process (`isolation: "process"`)
 * is lowered by its pid on every platform.
 */
import * as Os from "node:os"
import { workerData } from "node:worker_threads"

/** The nice value of worker threads and processes unless the node says otherwise. */
export const defaultNice = 10

/** What a thread's `workerData` carries for its priority. */
export interface PriorityData {
  readonly obanNice?: number | undefined
}

/** The `workerData` that makes a worker thread lower its priority to `nice`. */
export const threadData = (nice: number): PriorityData => ({ obanNice: nice })

/** Whether a thread can lower its own priority without lowering its process's. */
const perThreadNice = process.platform === "linux"

/**
 * In a worker thread started with `threadData`: lowers the thread's own
 * priority (Linux only), unless it already runs at `nice` or above. A
 * refusal (raising one's nice value is allowed to anyone, so a sandbox that
 * forbids it) leaves the thread as it is, with a process warning that says so.
 */
export const lowerThisThread = (): void => {
  const nice = (workerData as PriorityData | null | undefined)?.obanNice
  if (nice !== undefined && perThreadNice) raiseNice(0, nice)
}

/** Lowers a child process's priority. */
export const lowerProcess = (pid: number | undefined, nice: number): void => {
  if (pid !== undefined) raiseNice(pid, nice)
}

/**
 * Raises the nice value to `nice`, never lowers it: a thread or process
 * starts at its creator's, and one below the node's would run before the
 * node (as root) or be refused (otherwise).
 */
const raiseNice = (pid: number, nice: number): void => {
  try {
    if (Os.getPriority(pid) < nice) Os.setPriority(pid, nice)
  } catch (error) {
    process.emitWarning(`effect-oban could not lower the priority of a worker to nice ${nice}: ${String(error)}`)
  }
}
