import { describe, expect, it } from 'vitest';
import {
  compileSchedule,
  isValidIsoDate,
  isValidTimeZone,
  isWithinBusinessHours,
  localTimeIn,
  TeamScheduleSchema,
  type TeamSchedule,
} from './business-hours.ts';
import { NINE_TO_FIVE } from './fixtures.ts';

const schedule = (timeZone: string, extra: Partial<TeamSchedule> = {}): TeamSchedule =>
  TeamScheduleSchema.parse({ timeZone, weeklyHours: NINE_TO_FIVE, ...extra });
const open = (s: TeamSchedule, iso: string) => isWithinBusinessHours(s, new Date(iso));

describe('business hours across daylight-saving changes', () => {
  const ny = schedule('America/New_York');

  it('opens at 09:00 local on both sides of the spring-forward weekend (2026-03-08)', () => {
    // Friday, EST (UTC-5)
    expect(open(ny, '2026-03-06T13:30:00Z')).toBe(false); // 08:30
    expect(open(ny, '2026-03-06T14:30:00Z')).toBe(true); // 09:30
    // Monday, EDT (UTC-4): the same UTC instants are an hour later locally
    expect(open(ny, '2026-03-09T12:59:00Z')).toBe(false); // 08:59
    expect(open(ny, '2026-03-09T13:30:00Z')).toBe(true); // 09:30
    expect(open(ny, '2026-03-09T21:30:00Z')).toBe(false); // 17:30
  });

  it('follows the fall-back change (2026-11-01)', () => {
    expect(open(ny, '2026-10-30T13:30:00Z')).toBe(true); // Friday 09:30 EDT
    expect(open(ny, '2026-11-02T13:30:00Z')).toBe(false); // Monday 08:30 EST
    expect(open(ny, '2026-11-02T14:00:00Z')).toBe(true); // Monday 09:00 EST
    expect(open(ny, '2026-11-02T21:30:00Z')).toBe(true); // 16:30 EST
  });

  it('never opens an hour that the clocks skip, and opens a repeated hour twice', () => {
    const skipped = schedule('America/New_York', { weeklyHours: { sun: [{ start: '02:00', end: '03:00' }] } });
    expect(open(skipped, '2026-03-08T06:59:00Z')).toBe(false); // 01:59 EST
    expect(open(skipped, '2026-03-08T07:00:00Z')).toBe(false); // 03:00 EDT: 02:xx never happened
    const repeated = schedule('America/New_York', { weeklyHours: { sun: [{ start: '01:00', end: '02:00' }] } });
    expect(open(repeated, '2026-11-01T05:30:00Z')).toBe(true); // 01:30 EDT
    expect(open(repeated, '2026-11-01T06:30:00Z')).toBe(true); // 01:30 EST
    expect(open(repeated, '2026-11-01T07:30:00Z')).toBe(false); // 02:30 EST
  });

  it('uses the team’s own zone rules (London changes on a different date)', () => {
    const london = schedule('Europe/London');
    expect(open(london, '2026-03-27T08:30:00Z')).toBe(false); // Friday 08:30 GMT
    expect(open(london, '2026-03-30T08:30:00Z')).toBe(true); // Monday 09:30 BST
  });
});

describe('holidays', () => {
  it('close the whole local day', () => {
    const ny = schedule('America/New_York', { holidays: ['2026-12-25'] });
    expect(open(ny, '2026-12-24T17:00:00Z')).toBe(true); // Thursday noon
    expect(open(ny, '2026-12-25T17:00:00Z')).toBe(false); // Friday noon, holiday
    expect(open(ny, '2026-12-28T17:00:00Z')).toBe(true);
  });

  it('are local dates, not UTC dates', () => {
    const sydney = schedule('Australia/Sydney', { holidays: ['2026-01-26'] });
    // Sunday 23:00 UTC is Monday 10:00 in Sydney (AEDT, UTC+11): the holiday.
    expect(open(sydney, '2026-01-25T23:00:00Z')).toBe(false);
    expect(open(sydney, '2026-01-26T23:00:00Z')).toBe(true); // Tuesday 10:00
  });
});

describe('intervals', () => {
  it('run from start (inclusive) to end (exclusive), and may end at 24:00', () => {
    const utc = schedule('UTC', { weeklyHours: { sat: [{ start: '08:00', end: '12:00' }, { start: '20:00', end: '24:00' }] } });
    expect(open(utc, '2026-03-07T07:59:00Z')).toBe(false);
    expect(open(utc, '2026-03-07T08:00:00Z')).toBe(true);
    expect(open(utc, '2026-03-07T12:00:00Z')).toBe(false);
    expect(open(utc, '2026-03-07T23:59:00Z')).toBe(true);
    expect(open(utc, '2026-03-08T00:00:00Z')).toBe(false); // Sunday
  });

  it('are validated', () => {
    const bad = TeamScheduleSchema.safeParse({
      timeZone: 'Mars/Olympus',
      weeklyHours: { mon: [{ start: '17:00', end: '09:00' }], tue: [{ start: '9:00', end: '25:00' }] },
      holidays: ['2026-02-30'],
    });
    expect(bad.success).toBe(false);
    const paths = bad.error?.issues.map((i) => i.path.join('.'));
    expect(paths).toEqual(expect.arrayContaining(['timeZone', 'weeklyHours.mon.0.end', 'weeklyHours.tue.0.start', 'weeklyHours.tue.0.end', 'holidays.0']));
  });
});

describe('local time', () => {
  it('gives date, weekday and minutes, alternating zones without mixing them up', () => {
    const at = Date.parse('2026-03-09T03:30:00Z');
    expect(localTimeIn('America/Los_Angeles', at)).toEqual({ date: '2026-03-08', weekday: 'sun', minutes: 20 * 60 + 30 });
    expect(localTimeIn('Asia/Kolkata', at)).toEqual({ date: '2026-03-09', weekday: 'mon', minutes: 9 * 60 });
    expect(localTimeIn('America/Los_Angeles', at + 60_000).minutes).toBe(20 * 60 + 31);
  });

  it('agrees with Intl minute by minute on transition days, and across the year, in awkward zones', () => {
    const DAY = 86_400_000;
    for (const zone of ['America/New_York', 'Australia/Lord_Howe', 'Asia/Kathmandu', 'Pacific/Chatham', 'America/St_Johns', 'Africa/Casablanca']) {
      const format = new Intl.DateTimeFormat('en-GB', { timeZone: zone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', weekday: 'short', hour: '2-digit', minute: '2-digit' });
      const reference = (at: number) => {
        const p = Object.fromEntries(format.formatToParts(at).map((x) => [x.type, x.value]));
        const local = { date: `${p.year}-${p.month}-${p.day}`, weekday: String(p.weekday).toLowerCase(), minutes: Number(p.hour) * 60 + Number(p.minute) };
        return { local, offset: Date.parse(`${local.date}T${p.hour}:${p.minute}:00Z`) - Math.floor(at / 60_000) * 60_000 };
      };
      const mismatches: string[] = [];
      const check = (at: number) => {
        const got = localTimeIn(zone, at);
        const want = reference(at).local;
        if (JSON.stringify(got) !== JSON.stringify(want)) mismatches.push(`${new Date(at).toISOString()}: ${JSON.stringify(got)} ≠ ${JSON.stringify(want)}`);
      };
      let transitionDays = 0;
      for (let day = Date.parse('2026-01-01T00:00:00Z'); day < Date.parse('2027-01-01T00:00:00Z'); day += DAY) {
        if (reference(day).offset !== reference(day + DAY - 60_000).offset) {
          transitionDays++;
          for (let at = day; at < day + DAY; at += 60_000) check(at);
        } else {
          check(day + ((day / DAY) % 1440) * 60_000); // one minute, moving through the day as the year goes
        }
      }
      expect(mismatches.slice(0, 3), zone).toEqual([]);
      if (zone !== 'Asia/Kathmandu') expect(transitionDays, zone).toBeGreaterThanOrEqual(2);
    }
  });

  it('treats an unknown zone as closed rather than throwing', () => {
    const compiled = compileSchedule({ timeZone: 'Nowhere/Special', weeklyHours: NINE_TO_FIVE, holidays: [] });
    expect(isWithinBusinessHours(compiled, new Date('2026-03-09T15:00:00Z'))).toBe(false);
    expect(isValidTimeZone('Nowhere/Special')).toBe(false);
    expect(isValidTimeZone('Europe/Paris')).toBe(true);
    expect(isValidIsoDate('2028-02-29')).toBe(true);
    expect(isValidIsoDate('2026-02-29')).toBe(false);
  });
});
