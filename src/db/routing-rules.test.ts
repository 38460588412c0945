import { describe, expect, it } from 'vitest';
import { isWithinBusinessHours } from '../core/routing/index.ts';
import { scheduleOfDbTeam } from './routing-rules.ts';

describe('team hours from the teams table', () => {
  const monday10utc = Date.parse('2026-03-02T10:00:00Z');
  const sunday10utc = Date.parse('2026-03-01T10:00:00Z');

  it('reads [["09:00","17:00"]] pairs in the team zone, closed on days not listed', () => {
    const schedule = scheduleOfDbTeam({ timezone: 'America/New_York', business_hours: { mon: [['09:00', '17:00']] }, holidays: [] });
    expect(schedule.weeklyHours).toEqual({ mon: [{ start: '09:00', end: '17:00' }] });
    // 10:00 UTC is 05:00 in New York: closed; 15:00 UTC is 10:00: open.
    expect(isWithinBusinessHours(schedule, monday10utc)).toBe(false);
    expect(isWithinBusinessHours(schedule, monday10utc + 5 * 3_600_000)).toBe(true);
    expect(isWithinBusinessHours(schedule, sunday10utc + 5 * 3_600_000)).toBe(false);
  });

  it('treats empty hours as always open, except on holidays', () => {
    const schedule = scheduleOfDbTeam({ timezone: 'UTC', business_hours: {}, holidays: ['2026-03-02'] });
    expect(isWithinBusinessHours(schedule, sunday10utc)).toBe(true);
    expect(isWithinBusinessHours(schedule, monday10utc)).toBe(false);
  });
});
