/**
 * Imported first by the runner: in a child process (`isolation: "process"`),
 * SIGINT and SIGTERM are for the node alone. Ctrl-C in a terminal signals the
 * node's whole process group, and systemd's stop (KillMode=control-group) every
 * process of its unit; a child that died of them would fail its running job as
 * a crash, instead of the node giving the job its grace period and, after it,
 * its attempt back. The node stops its children itself (a close message, else
 * SIGKILL), and a child whose node died exits once its IPC channel is closed
 * and it is idle. Threads share the node's signals: nothing to do there.
 */
import { isMainThread } from "node:worker_threads"

const ignore = () => {}

if (isMainThread && process.send !== undefined) {
  process.on("SIGINT", ignore)
  process.on("SIGTERM", ignore)
}
