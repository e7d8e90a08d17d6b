/**
 * What PostgreSQL said about a failed statement, for a message people read:
 * the server's message with its detail and hint (the detail often names the
 * object in the way, such as a view), read from the driver's error under a
 * `SqlError`.
 */

/** The server's message with its detail and hint; undefined when the error carries none (no driver error under it). */
export const serverMessage = (error: { readonly reason?: { readonly cause?: unknown } }): string | undefined => {
  const cause = error.reason?.cause
  if (!(cause instanceof Error)) return undefined
  const { detail, hint } = cause as { readonly detail?: unknown; readonly hint?: unknown }
  return [
    cause.message,
    ...(typeof detail === "string" && detail !== "" ? [`detail: ${detail}`] : []),
    ...(typeof hint === "string" && hint !== "" ? [`hint: ${hint}`] : [])
  ].join("; ")
}
