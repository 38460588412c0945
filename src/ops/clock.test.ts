import { describe, expect, it } from 'vitest';
import { openMsBetween, startOfLocalDay, teamSchedule } from './clock.ts';

const nineToFive = teamSchedule({
  timezone: 'America/New_York',
  business_hours: Object.fromEntries(['mon', 'tue', 'wed', 'thu', 'fri'].map((d) => [d, [['09:00', '17:00']]])),
  holidays: ['2026-12-25'],
});

describe('business clock', () => {
  it('counts only open minutes, in the team zone', () => {
    // Fri 2026-11-20 16:50 EST (21:50Z) to Mon 09:10 EST (14:10Z): 10 min Friday + 10 min Monday.
    expect(openMsBetween(nineToFive, Date.parse('2026-11-20T21:50:00Z'), Date.parse('2026-11-23T14:10:00Z'))).toBe(20 * 60_000);
  });
  it('skips holidays', () => {
    expect(openMsBetween(nineToFive, Date.parse('2026-12-25T14:00:00Z'), Date.parse('2026-12-25T20:00:00Z'))).toBe(0);
  });
  it('no hours means always open', () => {
    expect(teamSchedule({ timezone: 'UTC', business_hours: {}, holidays: [] })).toBeNull();
    expect(openMsBetween(null, 0, 5_000)).toBe(5_000);
  });
});

describe('startOfLocalDay', () => {
  it('finds local midnight on both sides of a DST change', () => {
    expect(new Date(startOfLocalDay('2026-11-01', 'America/New_York')).toISOString()).toBe('2026-11-01T04:00:00.000Z');
    expect(new Date(startOfLocalDay('2026-11-02', 'America/New_York')).toISOString()).toBe('2026-11-02T05:00:00.000Z');
    expect(new Date(startOfLocalDay('2026-03-08', 'America/New_York')).toISOString()).toBe('2026-03-08T05:00:00.000Z');
    expect(new Date(startOfLocalDay('2026-03-09', 'America/New_York')).toISOString()).toBe('2026-03-09T04:00:00.000Z');
  });
  it('handles a zone whose midnight is skipped', () => {
    // America/Santiago springs forward at 00:00 → 01:00 on 2026-09-06.
    expect(new Date(startOfLocalDay('2026-09-06', 'America/Santiago')).toISOString()).toBe('2026-09-06T04:00:00.000Z');
  });
});
