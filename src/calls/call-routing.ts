import { isWithinBusinessHours, isValidTimeZone, WEEKDAYS, type WeeklyHours } from '../core/routing/business-hours.ts';
import type { CoordinatorReach } from '../db/calls.ts';

export type CallDecision =
  | { route: 'dial'; coordinatorId: string; phone: string; reason: string }
  | { route: 'voicemail'; coordinatorId: string | null; reason: string };

/**
 * Whether an incoming call is put through to the patient's coordinator, and why. Deliberately simple:
 * - no assigned coordinator, no phone on file, or a status other than `available` → voicemail;
 * - otherwise the coordinator's hours are those of their teams (`teams.business_hours` read in the team's time
 *   zone, closed on `teams.holidays`); open if any of their teams is open now. A team whose hours are `{}` is
 *   always open (0002's convention), and so is a coordinator in no team: their status is then the only gate.
 */
export function decideCallRoute(reach: CoordinatorReach | null, now: Date): CallDecision {
  if (!reach) return { route: 'voicemail', coordinatorId: null, reason: 'no coordinator is assigned' };
  if (!reach.phone) return { route: 'voicemail', coordinatorId: reach.coordinatorId, reason: 'the coordinator has no phone number on file' };
  if (reach.status !== 'available') return { route: 'voicemail', coordinatorId: reach.coordinatorId, reason: `the coordinator is ${reach.status.replaceAll('_', ' ')}` };
  if (reach.teams.length === 0) return { route: 'dial', coordinatorId: reach.coordinatorId, phone: reach.phone, reason: 'coordinator available (no team hours apply)' };
  for (const team of reach.teams) {
    if (isTeamOpen(team, now)) return { route: 'dial', coordinatorId: reach.coordinatorId, phone: reach.phone, reason: 'within the coordinator’s hours' };
  }
  return { route: 'voicemail', coordinatorId: reach.coordinatorId, reason: 'outside the coordinator’s hours' };
}

function isTeamOpen(team: CoordinatorReach['teams'][number], now: Date): boolean {
  const hours = toWeeklyHours(team.businessHours);
  if (hours === 'always') return true;
  if (hours === undefined || !isValidTimeZone(team.timezone)) return false;
  const holidays = Array.isArray(team.holidays) ? team.holidays.filter((day): day is string => typeof day === 'string') : [];
  try {
    return isWithinBusinessHours({ timeZone: team.timezone, weeklyHours: hours, holidays }, now);
  } catch {
    return false;
  }
}

/**
 * 0002 documents `{"mon": [["09:00","17:00"]]}`; the routing module's schema uses `{start, end}` objects. Both are
 * read here. Anything unreadable counts as closed, so a bad schedule sends calls to voicemail rather than to a
 * phone nobody is expected to answer.
 */
function toWeeklyHours(value: unknown): WeeklyHours | 'always' | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length === 0) return 'always';
  const hours: WeeklyHours = {};
  for (const [day, intervals] of entries) {
    if (!(WEEKDAYS as readonly string[]).includes(day) || !Array.isArray(intervals)) return undefined;
    const list: Array<{ start: string; end: string }> = [];
    for (const interval of intervals) {
      if (Array.isArray(interval) && typeof interval[0] === 'string' && typeof interval[1] === 'string') list.push({ start: interval[0], end: interval[1] });
      else if (interval && typeof interval === 'object' && typeof (interval as any).start === 'string' && typeof (interval as any).end === 'string') {
        list.push({ start: (interval as any).start, end: (interval as any).end });
      } else return undefined;
    }
    hours[day as keyof WeeklyHours] = list;
  }
  return hours;
}
