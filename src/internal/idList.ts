/**
 * Job ids for a log line: all of them up to `shown`, else the first `shown`
 * and how many more, so that a line about a large batch stays readable.
 */
export const idList = (ids: ReadonlyArray<number>, shown = 20): string =>
  ids.length <= shown ? ids.join(", ") : `${ids.slice(0, shown).join(", ")} and ${ids.length - shown} more`
