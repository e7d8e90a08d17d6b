/**
 * The Node options of a worker process (`isolation: "process"`): the node's
 * own, as `child_process.fork` and worker threads inherit them, so that a
 * worker module loads in a child as it does in a thread (`--import tsx`,
 * `--experimental-transform-types`, `--conditions`, `--env-file`, ...), less
 * those that would make the child something else than the runner: code to
 * evaluate (`-e`, `-p`), which would run instead of it, `--test`, which would
 * run it as a test file, and the inspector (`--inspect-brk` would stop each
 * child until a debugger attaches; any other would collide on the node's
 * port). Then the heap limit of the pool's
 * `resourceLimits`, which wins over an inherited one as it comes last.
 */

/** Options dropped with their value, given as the next argument when not as `--option=value`. */
const withValue = new Set(["-e", "--eval", "-p", "--print", "--inspect-port", "--debug-port"])

/** Options dropped alone, or whose value can only follow an `=`. */
const dropped = /^--(inspect(-brk|-wait)?|inspect-port|debug-port|eval|print|test)(=|$)/

export const childExecArgv = (execArgv: ReadonlyArray<string>, heapMb: number | undefined): Array<string> => {
  const kept: Array<string> = []
  for (let i = 0; i < execArgv.length; i++) {
    const option = execArgv[i]!
    if (withValue.has(option)) {
      i++
      continue
    }
    if (!dropped.test(option)) kept.push(option)
  }
  return heapMb === undefined ? kept : [...kept, `--max-old-space-size=${heapMb}`]
}
