/** What the node passes to each thread (as `workerData`) or child process (in the environment) it spawns. */
export interface RunnerData {
  /** The URL of the module that exports the worker. */
  readonly module: string
  readonly worker: string
}

/** The environment variable that carries `RunnerData` to a child process. */
export const runnerDataEnv = "EFFECT_OBAN_RUNNER"
