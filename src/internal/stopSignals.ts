/**
 * SIGTERM and SIGINT while a process that ran a node exits. `runMain`
 * removes its own listeners as its main fiber ends, then exits; a signal
 * that came in between (an operator's second Ctrl-C, an orchestrator that
 * signals again) found no listener and took Node's default action, ending a
 * clean shutdown with 143. Each helper adds a listener that ignores them for
 * that stretch only, so the default returns when the process goes on.
 */

const ignoreStopSignal = (): void => {}

const ignore = (): void => {
  process.on("SIGTERM", ignoreStopSignal)
  process.on("SIGINT", ignoreStopSignal)
}

/** Removes one `ignore` (the listener may be there twice: a hold and a teardown at once). */
const unignore = (): void => {
  process.removeListener("SIGTERM", ignoreStopSignal)
  process.removeListener("SIGINT", ignoreStopSignal)
}

let release: ReturnType<typeof setTimeout> | undefined

/**
 * Ignores SIGTERM and SIGINT for the next `millis` (one shared listener,
 * however many nodes end), when something handles them already (`runMain`):
 * a process relying on Node's default for them keeps it. The timer does not
 * keep the process alive.
 */
export const holdStopSignals = (millis: number): void => {
  if (release === undefined) {
    if (process.listenerCount("SIGTERM") === 0 && process.listenerCount("SIGINT") === 0) return
    ignore()
  } else {
    clearTimeout(release)
  }
  release = setTimeout(() => {
    release = undefined
    unignore()
  }, millis)
  release.unref()
}

/** Runs `exit` (a teardown's call of `runMain`'s exit) with SIGTERM and SIGINT ignored, until it returns. */
export const ignoringStopSignals = (exit: () => void): void => {
  ignore()
  try {
    exit()
  } finally {
    unignore()
  }
}
