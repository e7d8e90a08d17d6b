/**
 * Preloaded with `node --import` by test/threadProcesses.test.ts: marks the
 * process, so that a thread worker can tell whether its process was started
 * with the node's own Node options.
 */
;(globalThis as { obanPreloaded?: boolean }).obanPreloaded = true
