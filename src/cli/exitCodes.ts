/**
 * The exit codes of `effect-oban`, which scripts can rely on, and how a
 * failure maps to one. Documented in docs/cli.md.
 */

/**
 * @since 0.1.0
 */
export const ExitCode = {
  /** Done. */
  ok: 0,
  /**
   * Anything unexpected (a database error other than a lost connection, a defect), a migration the
   * database refused, or migration files that cannot be read (a broken install).
   */
  failure: 1,
  /** Bad input: unknown command or flag, a bad filter, limit, prefix or date. */
  usage: 2,
  /**
   * The database could not be reached, or refused the connection (login, unknown database), or ended
   * the session during the command (a restart) or took no writes (a standby).
   */
  unreachable: 3,
  /** The schema (prefix) has no effect-oban tables, or is behind this release. */
  notMigrated: 4,
  /** What was asked for does not exist: no such job, or no running node has the queue. */
  notFound: 5
} as const

/** A failure the CLI reports itself, with its exit code. */
export class CliFailure extends Error {
  readonly code: number
  readonly tag: string
  constructor(code: number, message: string, tag: string = "CliFailure") {
    super(message)
    this.code = code
    this.tag = tag
  }
}
