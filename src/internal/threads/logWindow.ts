/**
 * How much of a thread's logging the node may hold at once: the log lines
 * the thread has recorded and the node has not yet replayed, in number and
 * in bytes (as `maxPayloadBytes` counts them). The recorder adds each line
 * it records, and a line that finds the window full is dropped instead.
 *
 * Lines leave the window when the node acknowledges their chunk. The node's
 * RPC client acks every chunk of the `Events` stream; the slot holds each
 * ack back until it has replayed the chunk (`withheldAcks` in replay.ts),
 * and the runner passes the acks to the recorder. So the window covers
 * lines not yet sent, on the wire, and queued on the node together.
 */

/**
 * The most log lines of one thread that the node has not replayed yet. A
 * node whose loggers cost nothing takes about as many lines a second with
 * this window as without one (25,000-42,000 against 35,000-64,000 on the
 * 2 shared cores where it was measured); 256 gave 10,000, each window
 * waiting for a round trip.
 */
export const maxUnacknowledgedLogs = 1024

/**
 * The most bytes of those lines: large lines are bounded by this first
 * (64 lines of 64 KiB), ordinary ones (a few hundred bytes) by the count.
 */
export const maxUnacknowledgedLogBytes = 4 * 1024 * 1024

interface Lines {
  lines: number
  bytes: number
}

export interface LogWindow {
  /** Whether a line recorded now must be dropped. */
  readonly isFull: () => boolean
  /** A line of `bytes` is recorded, to be sent with the next chunk. */
  readonly add: (bytes: number) => void
  /** The lines recorded so far went out in a chunk. */
  readonly sent: () => void
  /** The lines recorded so far could not be sent: they will not be acknowledged. */
  readonly lost: () => void
  /** The node replayed the oldest chunk not yet acknowledged. */
  readonly acknowledged: () => void
  /** The stream closed: the chunks sent on it will not be acknowledged. */
  readonly disconnected: () => void
}

export const make = (): LogWindow => {
  const waiting: Lines = { lines: 0, bytes: 0 }
  let unsent: Lines = { lines: 0, bytes: 0 }
  // The lines of each chunk sent and not acknowledged, oldest first.
  let chunks: Array<Lines> = []
  const forget = (gone: Lines) => {
    waiting.lines -= gone.lines
    waiting.bytes -= gone.bytes
  }
  return {
    isFull: () => waiting.lines >= maxUnacknowledgedLogs || waiting.bytes >= maxUnacknowledgedLogBytes,
    add: (bytes) => {
      waiting.lines++
      waiting.bytes += bytes
      unsent.lines++
      unsent.bytes += bytes
    },
    sent: () => {
      chunks.push(unsent)
      unsent = { lines: 0, bytes: 0 }
    },
    lost: () => {
      forget(unsent)
      unsent = { lines: 0, bytes: 0 }
    },
    acknowledged: () => {
      const chunk = chunks.shift()
      if (chunk !== undefined) forget(chunk)
    },
    disconnected: () => {
      for (const chunk of chunks) forget(chunk)
      chunks = []
    }
  }
}
