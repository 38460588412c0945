/**
 * The two clocks waits are measured on: wall clock, or a team's business hours (teams.business_hours in its
 * teams.timezone, minus teams.holidays). Pure: no I/O.
 */
import { compileSchedule, isOpenAt, isValidTimeZone, wallClockMs, WEEKDAYS, type CompiledSchedule, type OpeningInterval } from '../core/routing/business-hours.ts';

export type ClockKind = 'wall' | 'business';

const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;

/**
 * Reads a teams row. Hours may be `{"mon": [["09:00","17:00"]]}` (0002's comment) or routing's
 * `{"mon": [{"start","end"}]}`. No hours at all means always open (0002's convention), returned as null.
 */
export function teamSchedule(team: { timezone: string; business_hours: unknown; holidays: unknown }): CompiledSchedule | null {
  const hours = (team.business_hours ?? {}) as Record<string, unknown>;
  const weeklyHours: Partial<Record<(typeof WEEKDAYS)[number], OpeningInterval[]>> = {};
  let any = false;
  for (const day of WEEKDAYS) {
    const list = hours[day];
    if (!Array.isArray(list)) continue;
    weeklyHours[day] = list.flatMap((item): OpeningInterval[] => {
      if (Array.isArray(item) && typeof item[0] === 'string' && typeof item[1] === 'string') return [{ start: item[0], end: item[1] }];
      if (item && typeof item === 'object' && 'start' in item && 'end' in item) return [{ start: String(item.start), end: String(item.end) }];
      return [];
    });
    any ||= weeklyHours[day].length > 0;
  }
  if (!any) return null;
  const holidays = Array.isArray(team.holidays) ? team.holidays.filter((d): d is string => typeof d === 'string') : [];
  return compileSchedule({ timeZone: isValidTimeZone(team.timezone) ? team.timezone : 'UTC', weeklyHours, holidays });
}

/**
 * Milliseconds between `fromMs` and `toMs` that fall inside the schedule (null schedule = always open).
 * Walks minute by minute, because open intervals are minute-aligned and wall-clock minutes survive DST
 * shifts unchanged; the cost is one cached offset lookup per minute, bounded by `capMs`.
 */
export function openMsBetween(schedule: CompiledSchedule | null, fromMs: number, toMs: number, capMs = 120 * DAY_MS): number {
  if (toMs <= fromMs) return 0;
  if (!schedule) return toMs - fromMs;
  const end = Math.min(toMs, fromMs + capMs);
  let total = 0;
  let cursor = fromMs;
  while (cursor < end) {
    const next = Math.min(end, (Math.floor(cursor / MINUTE_MS) + 1) * MINUTE_MS);
    if (isOpenAt(schedule, cursor)) total += next - cursor;
    cursor = next;
  }
  return total;
}

export function isOpen(schedule: CompiledSchedule | null, atMs: number): boolean {
  return schedule === null || isOpenAt(schedule, atMs);
}

/**
 * The instant local midnight starts `date` (YYYY-MM-DD) in `timeZone`. Where midnight does not exist
 * (a DST jump at 00:00) it is the first instant of that local day.
 */
export function startOfLocalDay(date: string, timeZone: string): number {
  const wall = Date.parse(`${date}T00:00:00Z`);
  // Offsets differ by at most a day; two corrections settle on the instant whose wall clock is `wall`.
  let guess = wall;
  for (let i = 0; i < 3; i += 1) guess = wall - (wallClockMs(timeZone, guess) - guess);
  // If midnight was skipped, guess lands on the previous day's 23:xx: step forward to the day's start.
  while (wallClockMs(timeZone, guess) < wall) guess += MINUTE_MS;
  while (wallClockMs(timeZone, guess - MINUTE_MS) >= wall) guess -= MINUTE_MS;
  return guess;
}

/** The calendar day after `date`. */
export function nextDate(date: string): string {
  return new Date(Date.parse(`${date}T00:00:00Z`) + DAY_MS).toISOString().slice(0, 10);
}
