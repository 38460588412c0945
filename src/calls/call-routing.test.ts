import { describe, expect, it } from 'vitest';
import type { CoordinatorReach } from '../db/calls.ts';
import { decideCallRoute } from './call-routing.ts';

// Tuesday 2026-11-24 15:00 UTC = 10:00 in New York.
const TUESDAY_3PM_UTC = new Date('2026-11-24T15:00:00Z');

const reach = (overrides: Partial<CoordinatorReach> = {}): CoordinatorReach => ({
  coordinatorId: 'c1',
  phone: '+15557654321',
  status: 'available',
  timezone: 'UTC',
  teams: [],
  ...overrides,
});

describe('decideCallRoute', () => {
  it('sends calls to voicemail without an assigned, reachable, available coordinator', () => {
    expect(decideCallRoute(null, TUESDAY_3PM_UTC)).toMatchObject({ route: 'voicemail', reason: 'no coordinator is assigned' });
    expect(decideCallRoute(reach({ phone: null }), TUESDAY_3PM_UTC)).toMatchObject({ route: 'voicemail', reason: 'the coordinator has no phone number on file' });
    expect(decideCallRoute(reach({ status: 'out_of_office' }), TUESDAY_3PM_UTC)).toMatchObject({ route: 'voicemail', reason: 'the coordinator is out of office' });
  });

  it('dials an available coordinator in no team', () => {
    expect(decideCallRoute(reach(), TUESDAY_3PM_UTC)).toEqual({ route: 'dial', coordinatorId: 'c1', phone: '+15557654321', reason: 'coordinator available (no team hours apply)' });
  });

  it('reads team hours in the team’s zone, in both stored shapes, and honours holidays', () => {
    const nineToFive = { tue: [['09:00', '17:00']] };
    const newYork = (hours: unknown, holidays: unknown = []) => reach({ teams: [{ timezone: 'America/New_York', businessHours: hours, holidays }] });
    expect(decideCallRoute(newYork(nineToFive), TUESDAY_3PM_UTC).route).toBe('dial');
    expect(decideCallRoute(newYork({ tue: [{ start: '09:00', end: '17:00' }] }), TUESDAY_3PM_UTC).route).toBe('dial');
    expect(decideCallRoute(newYork({ tue: [['11:00', '17:00']] }), TUESDAY_3PM_UTC)).toMatchObject({ route: 'voicemail', reason: 'outside the coordinator’s hours' });
    expect(decideCallRoute(newYork(nineToFive, ['2026-11-24']), TUESDAY_3PM_UTC).route).toBe('voicemail');
    // 15:00 UTC is 15:00 in UTC: outside a 09:00–12:00 window there, inside it in New York.
    expect(decideCallRoute(reach({ teams: [{ timezone: 'UTC', businessHours: { tue: [['09:00', '12:00']] }, holidays: [] }] }), TUESDAY_3PM_UTC).route).toBe('voicemail');
  });

  it('treats {} as always open and an unreadable schedule as closed', () => {
    expect(decideCallRoute(reach({ teams: [{ timezone: 'UTC', businessHours: {}, holidays: [] }] }), TUESDAY_3PM_UTC).route).toBe('dial');
    expect(decideCallRoute(reach({ teams: [{ timezone: 'UTC', businessHours: { tue: 'all day' }, holidays: [] }] }), TUESDAY_3PM_UTC).route).toBe('voicemail');
    expect(decideCallRoute(reach({ teams: [{ timezone: 'Mars/Olympus', businessHours: { tue: [['00:00', '24:00']] }, holidays: [] }] }), TUESDAY_3PM_UTC).route).toBe('voicemail');
  });

  it('is open when any of the coordinator’s teams is', () => {
    const closed = { timezone: 'UTC', businessHours: { mon: [['09:00', '10:00']] }, holidays: [] };
    const open = { timezone: 'UTC', businessHours: { tue: [['14:00', '16:00']] }, holidays: [] };
    expect(decideCallRoute(reach({ teams: [closed, open] }), TUESDAY_3PM_UTC).route).toBe('dial');
  });
});
