/**
 * Business hours of a team, in the team's own IANA time zone. Local wall-clock time comes from
 * `Intl.DateTimeFormat` (the tz database Node ships), so daylight-saving changes need no code of ours.
 */
import { z } from 'zod';

export const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
export type Weekday = (typeof WEEKDAYS)[number];

const HH_MM = /^(?:[01]\d|2[0-3]):[0-5]\d$/;
const ISO_DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

/** Minutes since local midnight; `24:00` is allowed as an end so a shift can run to midnight. */
export function parseClock(text: string): number | null {
  if (text === '24:00') return 24 * 60;
  if (!HH_MM.test(text)) return null;
  return Number(text.slice(0, 2)) * 60 + Number(text.slice(3, 5));
}

export function isValidTimeZone(timeZone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone });
    return true;
  } catch {
    return false;
  }
}

export function isValidIsoDate(text: string): boolean {
  const m = ISO_DATE.exec(text);
  if (!m) return false;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const date = new Date(Date.UTC(year, month - 1, day));
  return date.getUTCFullYear() === year && date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
}

/**
 * `start` inclusive, `end` exclusive, both local `HH:MM`. A shift across midnight is written as two
 * intervals (`mon 22:00–24:00`, `tue 00:00–06:00`) so a holiday closes exactly the calendar day it names.
 */
export const OpeningIntervalSchema = z
  .strictObject({
    start: z.string().refine((s) => s !== '24:00' && parseClock(s) !== null, 'expected HH:MM (00:00–23:59)'),
    end: z.string().refine((s) => parseClock(s) !== null, 'expected HH:MM (00:01–24:00)'),
  })
  .refine((i) => (parseClock(i.start) ?? 0) < (parseClock(i.end) ?? 0), {
    message: 'start must be before end; split a shift that crosses midnight in two',
    path: ['end'],
  });
export type OpeningInterval = z.output<typeof OpeningIntervalSchema>;

export const WeeklyHoursSchema = z.strictObject(
  Object.fromEntries(WEEKDAYS.map((d) => [d, z.array(OpeningIntervalSchema).optional()])) as Record<
    Weekday,
    z.ZodOptional<z.ZodArray<typeof OpeningIntervalSchema>>
  >,
);
export type WeeklyHours = z.output<typeof WeeklyHoursSchema>;

export const TeamScheduleSchema = z.strictObject({
  timeZone: z.string().refine(isValidTimeZone, 'unknown IANA time zone'),
  weeklyHours: WeeklyHoursSchema,
  /** Local calendar dates (`YYYY-MM-DD`) on which the team is closed all day. */
  holidays: z.array(z.string().refine(isValidIsoDate, 'expected a calendar date YYYY-MM-DD')).default([]),
});
export type TeamSchedule = z.output<typeof TeamScheduleSchema>;

export interface LocalTime {
  /** Local calendar date, `YYYY-MM-DD`. */
  date: string;
  weekday: Weekday;
  /** Minutes since local midnight. */
  minutes: number;
}

const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;

// Building a DateTimeFormat costs tens of microseconds; one per zone is reused for the process lifetime.
const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
    });
    formatters.set(timeZone, f);
  }
  return f;
}

/** The local wall-clock time at `atMs`, as epoch ms of the same wall-clock reading in UTC, to the minute. */
function wallClockMsViaIntl(timeZone: string, atMs: number): number {
  let year = 1970;
  let month = 1;
  let day = 1;
  let hour = 0;
  let minute = 0;
  for (const part of formatterFor(timeZone).formatToParts(atMs)) {
    if (part.type === 'year') year = Number(part.value);
    else if (part.type === 'month') month = Number(part.value);
    else if (part.type === 'day') day = Number(part.value);
    else if (part.type === 'hour') hour = Number(part.value);
    else if (part.type === 'minute') minute = Number(part.value);
  }
  return Date.UTC(year, month - 1, day, hour, minute);
}

// formatToParts costs about a microsecond, too much to pay per rule per message. A zone's UTC offset is the same
// at both ends of almost every UTC day, and then it holds all day: cache it per (zone, UTC day) and do arithmetic.
// Days with a transition (a couple a year) are marked null and go through Intl each time. Offsets are whole
// minutes in every zone since 1972, which minute precision relies on.
const offsetsByZone = new Map<string, Map<number, number | null>>();
const MAX_CACHED_DAYS = 512;

function utcOffsetOnDay(timeZone: string, utcDay: number): number | null {
  let days = offsetsByZone.get(timeZone);
  if (!days) {
    days = new Map();
    offsetsByZone.set(timeZone, days);
  }
  const cached = days.get(utcDay);
  if (cached !== undefined) return cached;
  const startMs = utcDay * DAY_MS;
  const endMs = startMs + DAY_MS - MINUTE_MS;
  const atStart = wallClockMsViaIntl(timeZone, startMs) - startMs;
  const atEnd = wallClockMsViaIntl(timeZone, endMs) - endMs;
  const offset = atStart === atEnd ? atStart : null;
  if (days.size >= MAX_CACHED_DAYS) days.clear();
  days.set(utcDay, offset);
  return offset;
}

/** Local wall-clock time in `timeZone` at `atMs`, as epoch ms of that reading in UTC (minute precision). Throws on an unknown zone. */
export function wallClockMs(timeZone: string, atMs: number): number {
  const minuteMs = Math.floor(atMs / MINUTE_MS) * MINUTE_MS;
  const offset = utcOffsetOnDay(timeZone, Math.floor(minuteMs / DAY_MS));
  return offset === null ? wallClockMsViaIntl(timeZone, minuteMs) : minuteMs + offset;
}

/** The wall-clock date, weekday and minute in `timeZone` at instant `atMs`. Throws on an unknown zone. */
export function localTimeIn(timeZone: string, atMs: number): LocalTime {
  const wall = wallClockMs(timeZone, atMs);
  const d = new Date(wall);
  return {
    date: `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, '0')}-${String(d.getUTCDate()).padStart(2, '0')}`,
    weekday: WEEKDAYS[d.getUTCDay()] ?? 'sun',
    minutes: d.getUTCHours() * 60 + d.getUTCMinutes(),
  };
}

/** A schedule turned into numbers once, so the per-message check is a few comparisons. */
export interface CompiledSchedule {
  timeZone: string;
  /** Indexed like WEEKDAYS; each entry is [startMinute, endMinute) pairs. */
  intervals: ReadonlyArray<ReadonlyArray<readonly [number, number]>>;
  /** Holidays as day numbers (days since 1970-01-01 of the local date). */
  holidayDays: ReadonlySet<number>;
}

export function compileSchedule(schedule: TeamSchedule): CompiledSchedule {
  return {
    timeZone: schedule.timeZone,
    intervals: WEEKDAYS.map((d) =>
      (schedule.weeklyHours[d] ?? []).map((i) => [parseClock(i.start) ?? 0, parseClock(i.end) ?? 0] as const),
    ),
    holidayDays: new Set(schedule.holidays.map((date) => Date.parse(`${date}T00:00:00Z`) / DAY_MS)),
  };
}

/** Never throws: a zone the runtime does not know counts as closed (validation rejects such zones up front). */
export function isOpenAt(schedule: CompiledSchedule, atMs: number): boolean {
  let wall: number;
  try {
    wall = wallClockMs(schedule.timeZone, atMs);
  } catch {
    return false;
  }
  const day = Math.floor(wall / DAY_MS);
  if (schedule.holidayDays.has(day)) return false;
  const minutes = (wall - day * DAY_MS) / MINUTE_MS;
  // 1970-01-01 was a Thursday.
  const today = schedule.intervals[(((day + 4) % 7) + 7) % 7] ?? [];
  for (const [start, end] of today) {
    if (minutes >= start && minutes < end) return true;
  }
  return false;
}

export interface OpenCheck {
  isOpen: boolean;
  local: LocalTime | null;
  isHoliday: boolean;
}

/** `isOpenAt` with the local time that decided it, for explanations. */
export function checkOpen(schedule: CompiledSchedule, atMs: number): OpenCheck {
  let local: LocalTime;
  try {
    local = localTimeIn(schedule.timeZone, atMs);
  } catch {
    return { isOpen: false, local: null, isHoliday: false };
  }
  const isHoliday = schedule.holidayDays.has(Date.parse(`${local.date}T00:00:00Z`) / DAY_MS);
  return { isOpen: isOpenAt(schedule, atMs), local, isHoliday };
}

export function isWithinBusinessHours(schedule: TeamSchedule | CompiledSchedule, at: Date | number): boolean {
  const compiled = 'weeklyHours' in schedule ? compileSchedule(schedule) : schedule;
  return isOpenAt(compiled, typeof at === 'number' ? at : at.getTime());
}

export function formatLocalTime(local: LocalTime): string {
  const hh = String(Math.floor(local.minutes / 60)).padStart(2, '0');
  const mm = String(local.minutes % 60).padStart(2, '0');
  return `${local.date} ${local.weekday} ${hh}:${mm}`;
}
