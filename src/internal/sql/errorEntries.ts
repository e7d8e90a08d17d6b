/**
 * The bound on a job's `errors` entries, as SQL: what every write that
 * appends one keeps, and what every read returns.
 */

/**
 * How many entries a job's `errors` keeps: the latest (a cancel that ends an attempt may add one more,
 * from its trigger; the next append trims again). Each entry's message and cause are cut to 64 KiB as
 * stored (see `errorText.ts`), so a row stays far below the 16 MiB the driver reads in one message;
 * without a bound, a job failing with long messages attempt after attempt grew past it, and no fetch
 * of its queue could read it. Reads return at most this many.
 */
export const keptErrorEntries = 20

/**
 * SQL for the latest entries of `errors` (SQL text of a jobs' column or value): at most
 * `keptErrorEntries`, or one fewer with `room` for an entry about to be appended.
 */
export const latestErrors = (errors: string, room: 0 | 1 = 0): string => {
  const keep = keptErrorEntries - room
  return `CASE WHEN jsonb_array_length(${errors}) > ${keep} THEN jsonb_path_query_array(${errors}, '$[last - ${keep - 1} to last]') ELSE ${errors} END`
}
