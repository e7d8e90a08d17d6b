/**
 * The slots of a cron expression in a window, on top of Effect's `Cron`:
 * the latest 100 of a long window without walking all of it, and the slot
 * whose local time a spring-forward gap skipped. Effect puts such a slot
 * after the gap, but only when its search starts before the gap: from inside
 * the hour after it, `next` skips to the next day (Effect documents that its
 * search is not exact near a gap). So that slot is looked up from just
 * before the change of the clocks.
 */
import * as EffectCron from "effect/Cron"
import * as DateTime from "effect/DateTime"
import * as Option from "effect/Option"

/** The first `limit` slots of `cron` in `(from, to]`. */
const slotsFrom = (cron: EffectCron.Cron, from: Date, to: Date, limit: number): Array<Date> => {
  const slots: Array<Date> = []
  let cursor = from
  while (slots.length < limit) {
    const slot = EffectCron.next(cron, cursor)
    if (slot.getTime() > to.getTime()) break
    slots.push(slot)
    cursor = slot
  }
  return slots
}

/** The slots of `cron` in `(from, to]`, at most the latest 100. */
export const latestSlots = (cron: EffectCron.Cron, from: Date, to: Date): Array<Date> => {
  let slots = slotsFrom(cron, from, to, 101)
  if (slots.length > 100) {
    // The latest 100: after a long gap the slots nearest now matter, not the oldest. The search
    // starts at the 100th slot before `to`, found backwards, rather than walk the whole gap.
    let cursor = new Date(to.getTime() + 1)
    for (let i = 0; i < 100; i++) cursor = EffectCron.prev(cron, cursor)
    slots = slotsFrom(cron, new Date(Math.max(from.getTime(), cursor.getTime() - 1)), to, 100)
  }
  const moved = slotAfterGap(cron, from, to)
  if (moved !== undefined && slots.length < 100 && !slots.some((slot) => slot.getTime() === moved.getTime())) {
    slots.push(moved)
    slots.sort((a, b) => a.getTime() - b.getTime())
  }
  return slots
}

/** The first slot of `cron` after `after`, also when clocks go forward around it. */
export const nextSlot = (cron: EffectCron.Cron, after: Date): Date => {
  const next = EffectCron.next(cron, after)
  const moved = slotAfterGap(cron, after, new Date(after.getTime() + gapReach))
  return moved !== undefined && moved.getTime() < next.getTime() ? moved : next
}

/** How far before `from` a change of the clocks is looked for: a gap's slots resolve within its hour. */
const gapReach = 2 * 3_600_000

/** When the clocks of `cron`'s zone went forward shortly before `to`, the skipped slot if it falls in `(from, to]`. */
const slotAfterGap = (cron: EffectCron.Cron, from: Date, to: Date): Date | undefined => {
  if (Option.isNone(cron.tz)) return undefined
  const zone = cron.tz.value
  const offsetAt = (millis: number) => DateTime.zonedOffset(DateTime.makeZonedUnsafe(millis, { timeZone: zone }))
  const start = from.getTime() - gapReach
  const before = offsetAt(start)
  if (offsetAt(to.getTime()) <= before) return undefined
  // The instant of the change, to the millisecond.
  let low = start
  let high = to.getTime()
  while (high - low > 1) {
    const middle = Math.floor((low + high) / 2)
    if (offsetAt(middle) === before) low = middle
    else high = middle
  }
  const slot = EffectCron.next(cron, new Date(low))
  return slot.getTime() > from.getTime() && slot.getTime() <= to.getTime() ? slot : undefined
}
