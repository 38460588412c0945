import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Db } from '../db/db.ts';
import { backends } from '../test/databases.ts';
import { startHarness, type Harness } from '../test/harness.ts';
import { buildDailySeries, buildReport } from './reports.ts';

const TZ = 'America/New_York';
// 2026-10-31 and 2026-11-01 in New York, inclusive: EDT (UTC-4) midnight to EST (UTC-5) midnight, 49 hours.
const RANGE_START = Date.parse('2026-10-31T04:00:00Z');
const RANGE_END = Date.parse('2026-11-02T05:00:00Z');
const NOW = new Date('2026-11-05T12:00:00Z');
const SLA_MS = 15 * 60_000;
const DAY = 86_400_000;

/** mulberry32: a small seeded PRNG, so the dataset is the same on every run. */
function prng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Msg {
  patient: string;
  seq: number;
  direction: 'inbound' | 'outbound';
  channel: string;
  at: number;
  author: string | null;
  automatic: boolean;
}

async function generate(db: Db, coordinators: string[]) {
  const random = prng(20261101);
  const pick = <T,>(xs: readonly T[]) => xs[Math.floor(random() * xs.length)]!;
  const messages: Msg[] = [];
  const handoffs: Array<{ at: number; from: string; to: string }> = [];
  const owner = new Map<string, string>();
  for (let p = 0; p < 14; p += 1) {
    const patient = (await db.query<{ id: string }>(`INSERT INTO patients DEFAULT VALUES RETURNING id`)).rows[0]!.id;
    let current = pick(coordinators);
    await db.query(`INSERT INTO assignments (patient_id, coordinator_id) VALUES ($1, $2)`, [patient, current]);
    let at = Date.parse('2026-10-29T12:00:00Z') + random() * 2 * DAY;
    let seq = 0;
    const count = 6 + Math.floor(random() * 14);
    for (let i = 0; i < count; i += 1) {
      // Gaps from a minute to a day and a half: some waits meet a 15-minute SLA, some do not, some span days.
      at += [60_000, 5 * 60_000, 14 * 60_000, 40 * 60_000, 3 * 3_600_000, 30 * 3_600_000][Math.floor(random() * 6)]! * (0.5 + random());
      at = Math.round(at);
      // The report is taken at NOW: nothing after it exists yet.
      if (at > NOW.getTime()) break;
      seq += 1;
      const roll = random();
      if (roll < 0.5) messages.push({ patient, seq, direction: 'inbound', channel: pick(['sms', 'whatsapp']), at, author: null, automatic: false });
      else if (roll < 0.6) messages.push({ patient, seq, direction: 'outbound', channel: 'sms', at, author: null, automatic: true });
      else if (roll < 0.93) messages.push({ patient, seq, direction: 'outbound', channel: pick(['sms', 'whatsapp']), at, author: random() < 0.8 ? current : pick(coordinators), automatic: false });
      else {
        const to = pick(coordinators.filter((c) => c !== current));
        handoffs.push({ at, from: current, to });
        await db.query(
          `INSERT INTO patient_events (patient_id, seq, kind, from_coordinator_id, to_coordinator_id, note, created_at) VALUES ($1, $2, 'handoff', $3, $4, 'n', $5)`,
          [patient, seq, current, to, new Date(at).toISOString()],
        );
        await db.query(`UPDATE assignments SET coordinator_id = $2 WHERE patient_id = $1`, [patient, to]);
        current = to;
        continue;
      }
      const m = messages[messages.length - 1]!;
      await db.query(
        `INSERT INTO messages (patient_id, seq, direction, channel, address, body, status, author_id, automatic, created_at) VALUES ($1, $2, $3, $4, 'x', 'b', 'delivered', $5, $6, $7)`,
        [patient, seq, m.direction, m.channel, m.author, m.automatic, new Date(at).toISOString()],
      );
    }
    owner.set(patient, current);
  }
  return { messages, handoffs, owner };
}

type Data = Awaited<ReturnType<typeof generate>>;
type TestWait = { start: number; inbound: Msg[]; reply: Msg | null; first: boolean; owner: string | null };

/**
 * The same waits, found the other way round: from each human reply back to the inbound messages it
 * answers, rather than forward through the log.
 */
function waitsByReplies(data: Data): TestWait[] {
  const waits: TestWait[] = [];
  for (const patient of new Set(data.messages.map((m) => m.patient))) {
    const log = data.messages.filter((m) => m.patient === patient).sort((a, b) => a.seq - b.seq);
    const human = log.filter((m) => m.direction === 'outbound' && !m.automatic);
    let previous = 0;
    for (const bound of [...human.map((h) => h.seq), Infinity]) {
      const inbound = log.filter((m) => m.direction === 'inbound' && m.seq > previous && m.seq < bound);
      if (inbound.length > 0) {
        const reply = bound === Infinity ? null : log.find((m) => m.seq === bound)!;
        const start = inbound[0]!.at;
        const lastHumanBefore = human.filter((h) => h.at < start).pop();
        waits.push({ start, inbound, reply, first: !lastHumanBefore || start - lastHumanBefore.at >= DAY, owner: reply ? reply.author : (data.owner.get(patient) ?? null) });
      }
      previous = bound;
    }
  }
  return waits;
}

interface Grouping {
  ofWait(w: TestWait): string[];
  ofInbound(m: Msg, w: TestWait): string[];
  ofOutbound(m: Msg): string[];
  ofHandoff(h: Data['handoffs'][number]): string[] | null;
}

/** Expected figures for one group key, given how the grouping assigns things to keys. */
function expected(data: Data, key: string, g: Grouping) {
  const inRange = (at: number) => at >= RANGE_START && at < RANGE_END;
  const waits = waitsByReplies(data);
  const mine = waits.filter((w) => g.ofWait(w).includes(key) && inRange(w.start));
  const answered = mine.filter((w) => w.reply);
  const replySeconds = answered.map((w) => (w.reply!.at - w.start) / 1000).sort((a, b) => a - b);
  const firstSeconds = answered.filter((w) => w.first).map((w) => (w.reply!.at - w.start) / 1000).sort((a, b) => a - b);
  const rank = (xs: number[], p: number) => (xs.length ? xs[Math.ceil((xs.length * p) / 100) - 1]! : null);
  const met = answered.filter((w) => w.reply!.at - w.start <= SLA_MS).length;
  const missed = answered.length - met + mine.filter((w) => !w.reply && NOW.getTime() - w.start > SLA_MS).length;
  const outbound = data.messages.filter((m) => m.direction === 'outbound' && !m.automatic && inRange(m.at) && g.ofOutbound(m).includes(key));
  const handoffs = data.handoffs.filter((h) => inRange(h.at)).map((h) => g.ofHandoff(h));
  return {
    messagesIn: waits.flatMap((w) => w.inbound.filter((m) => inRange(m.at) && g.ofInbound(m, w).includes(key))).length,
    messagesOut: outbound.length,
    patientsServed: new Set(outbound.map((m) => m.patient)).size,
    waits: mine.length,
    unanswered: mine.filter((w) => !w.reply).length,
    conversations: mine.filter((w) => w.first).length,
    firstResponse: { p50: rank(firstSeconds, 50), p90: rank(firstSeconds, 90), max: firstSeconds.at(-1) ?? null, count: firstSeconds.length },
    replyTime: { p50: rank(replySeconds, 50), p90: rank(replySeconds, 90), max: replySeconds.at(-1) ?? null, count: replySeconds.length },
    slaMetPercent: met + missed === 0 ? null : (100 * met) / (met + missed),
    handoffs: handoffs.some((k) => k === null) ? null : handoffs.filter((k) => k!.includes(key)).length,
  };
}

describe.each(backends())('reports on $name', (backend) => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness(backend);
  });
  afterEach(() => h.close());

  it('match figures computed independently, per coordinator, team and channel, over a range spanning the end of DST', async () => {
    const db = h.database.db;
    const people = await Promise.all(['Ada', 'Bob', 'Cal'].map((name) => h.createCoordinator({ name })));
    const [ada, bob, cal] = people.map((p) => p.id) as [string, string, string];
    const teams = (await db.query<{ id: string; name: string }>(`INSERT INTO teams (name) VALUES ('North'), ('South') RETURNING id, name`)).rows;
    const north = teams.find((t) => t.name === 'North')!.id;
    const south = teams.find((t) => t.name === 'South')!.id;
    // Bob is in both teams, so his work counts in each.
    const membership: Record<string, string[]> = { [ada]: [north], [bob]: [north, south], [cal]: [south] };
    for (const [coordinator, ids] of Object.entries(membership)) for (const team of ids) await db.query(`INSERT INTO team_members (team_id, coordinator_id) VALUES ($1, $2)`, [team, coordinator]);
    const data = await generate(db, [ada, bob, cal]);

    const groupings: Record<'coordinator' | 'team' | 'channel', Grouping> = {
      coordinator: { ofWait: (w) => (w.owner ? [w.owner] : []), ofInbound: (_m, w) => (w.owner ? [w.owner] : []), ofOutbound: (m) => [m.author!], ofHandoff: (x) => [x.from, x.to] },
      team: {
        ofWait: (w) => (w.owner ? membership[w.owner]! : []),
        ofInbound: (_m, w) => (w.owner ? membership[w.owner]! : []),
        ofOutbound: (m) => membership[m.author!]!,
        ofHandoff: (x) => [...new Set([...membership[x.from]!, ...membership[x.to]!])],
      },
      channel: { ofWait: (w) => [w.inbound[0]!.channel], ofInbound: (m) => [m.channel], ofOutbound: (m) => [m.channel], ofHandoff: () => null },
    };
    let compared = 0;
    for (const groupBy of ['coordinator', 'team', 'channel'] as const) {
      const report = await buildReport(db, { groupBy, from: '2026-10-31', to: '2026-11-01', timeZone: TZ, clock: 'wall', slaMinutes: 15, now: NOW });
      expect(report.startsAt).toBe(new Date(RANGE_START).toISOString());
      expect(report.endsAt).toBe(new Date(RANGE_END).toISOString());
      expect(report.clock).toBe('wall');
      const keys = groupBy === 'coordinator' ? [ada, bob, cal] : groupBy === 'team' ? [north, south] : ['sms', 'whatsapp'];
      expect(report.rows.map((r) => r.key).every((k) => keys.includes(k))).toBe(true);
      for (const key of keys) {
        const want = expected(data, key, groupings[groupBy]);
        const row = report.rows.find((r) => r.key === key);
        if (!row) {
          expect(want.waits + want.messagesOut + want.messagesIn + (want.handoffs ?? 0)).toBe(0);
          continue;
        }
        expect({ ...row, key: undefined, label: undefined, automaticOut: undefined }, `${groupBy} ${key}`).toEqual({ ...want, key: undefined, label: undefined, automaticOut: undefined });
        compared += want.waits;
      }
      const inRange = (m: Msg) => m.at >= RANGE_START && m.at < RANGE_END;
      expect(report.total.messagesIn).toBe(data.messages.filter((m) => m.direction === 'inbound' && inRange(m)).length);
      expect(report.total.automaticOut).toBe(data.messages.filter((m) => m.automatic && inRange(m)).length);
      if (groupBy !== 'channel') expect(report.total.handoffs).toBe(data.handoffs.filter((x) => x.at >= RANGE_START && x.at < RANGE_END).length);
    }
    // The dataset must actually exercise the figures.
    expect(compared).toBeGreaterThan(30);

    // The daily series splits the same range into local days (24 h on Oct 31, 25 h on Nov 1) that add up.
    const series = await buildDailySeries(db, { from: '2026-10-31', to: '2026-11-01', timeZone: TZ, clock: 'wall', slaMinutes: 15, now: NOW });
    expect(series.days.map((d) => [d.date, d.startsAt, d.endsAt])).toEqual([
      ['2026-10-31', '2026-10-31T04:00:00.000Z', '2026-11-01T04:00:00.000Z'],
      ['2026-11-01', '2026-11-01T04:00:00.000Z', '2026-11-02T05:00:00.000Z'],
    ]);
    const whole = await buildReport(db, { groupBy: 'channel', from: '2026-10-31', to: '2026-11-01', timeZone: TZ, clock: 'wall', slaMinutes: 15, now: NOW });
    for (const field of ['messagesIn', 'messagesOut', 'waits', 'unanswered', 'conversations'] as const) {
      expect(series.days.reduce((sum, d) => sum + d.total[field], 0), field).toBe(whole.total[field]);
    }
  });

  it('measures on the business clock when asked, and says so', async () => {
    const db = h.database.db;
    const ada = await h.createCoordinator({ name: 'Ada' });
    const team = (await db.query<{ id: string }>(
      `INSERT INTO teams (name, timezone, business_hours) VALUES ('Care NY', 'America/New_York', $1) RETURNING id`,
      [JSON.stringify(Object.fromEntries(['mon', 'tue', 'wed', 'thu', 'fri'].map((d) => [d, [['09:00', '17:00']]])))],
    )).rows[0]!.id;
    await db.query(`INSERT INTO team_members (team_id, coordinator_id) VALUES ($1, $2)`, [team, ada.id]);
    const patient = (await db.query<{ id: string }>(`INSERT INTO patients DEFAULT VALUES RETURNING id`)).rows[0]!.id;
    // Friday 16:50 EST in, Monday 09:10 EST out: 20 business minutes, 64 h 20 min of wall clock.
    await db.query(`INSERT INTO messages (patient_id, seq, direction, channel, address, body, status, created_at) VALUES ($1, 1, 'inbound', 'sms', 'x', 'b', 'received', '2026-11-20T21:50:00Z')`, [patient]);
    await db.query(`INSERT INTO messages (patient_id, seq, direction, channel, address, body, status, author_id, created_at) VALUES ($1, 2, 'outbound', 'sms', 'x', 'b', 'delivered', $2, '2026-11-23T14:10:00Z')`, [patient, ada.id]);
    const query = { groupBy: 'team' as const, from: '2026-11-20', to: '2026-11-20', timeZone: TZ, slaMinutes: 30, now: new Date('2026-11-24T00:00:00Z') };
    const business = await buildReport(db, { ...query, clock: 'business' });
    expect(business.clock).toBe('business');
    expect(business.rows[0]!.replyTime.max).toBe(20 * 60);
    expect(business.rows[0]!.slaMetPercent).toBe(100);
    const wall = await buildReport(db, { ...query, clock: 'wall' });
    expect(wall.rows[0]!.replyTime.max).toBe((64 * 60 + 20) * 60);
    expect(wall.rows[0]!.slaMetPercent).toBe(0);
  });

  it('counts the extra hour of the DST change and nothing past local midnight', async () => {
    const db = h.database.db;
    const ada = await h.createCoordinator({ name: 'Ada' });
    const patient = (await db.query<{ id: string }>(`INSERT INTO patients DEFAULT VALUES RETURNING id`)).rows[0]!.id;
    const at = [
      '2026-10-31T03:59:00Z', // 23:59 EDT on the 30th: before the range
      '2026-10-31T04:00:00Z', // 00:00 EDT on the 31st: first instant of the range
      '2026-11-01T05:30:00Z', // 01:30 EDT, the first 01:30 of Nov 1
      '2026-11-01T06:30:00Z', // 01:30 EST, the repeated hour
      '2026-11-02T04:59:00Z', // 23:59 EST on Nov 1: last minute of the range
      '2026-11-02T05:00:00Z', // 00:00 EST on Nov 2: outside
    ];
    for (const [i, t] of at.entries()) {
      await db.query(
        `INSERT INTO messages (patient_id, seq, direction, channel, address, body, status, author_id, created_at) VALUES ($1, $2, 'outbound', 'sms', 'x', 'b', 'delivered', $3, $4)`,
        [patient, i + 1, ada.id, t],
      );
    }
    const report = await buildReport(db, { groupBy: 'channel', from: '2026-10-31', to: '2026-11-01', timeZone: TZ, clock: 'wall', slaMinutes: 15, now: NOW });
    expect(report.total.messagesOut).toBe(4);
    const utc = await buildReport(db, { groupBy: 'channel', from: '2026-10-31', to: '2026-11-01', timeZone: 'UTC', clock: 'wall', slaMinutes: 15, now: NOW });
    expect(utc.total.messagesOut).toBe(4);
    expect(utc.endsAt).toBe('2026-11-02T00:00:00.000Z');
  });

  it('is served as JSON and CSV to supervisors, with the zone required', async () => {
    // An admin: the patient is in no team, and a supervisor's report covers only their teams (ops-scope.int.test.ts).
    const sup = await h.createCoordinator({ name: 'Sue', role: 'admin' });
    const coordinator = await h.createCoordinator({ name: 'Cal' });
    await h.sendSms('+15550002001', 'hello');
    const today = new Date().toISOString().slice(0, 10);
    const query = `from=${today}&to=${today}&tz=UTC&groupBy=channel`;
    const json = await h.api('GET', `/api/ops/reports?${query}`, { token: sup.token });
    expect(json.status).toBe(200);
    expect(json.json.rows.map((r: { key: string; messagesIn: number }) => [r.key, r.messagesIn])).toEqual([['sms', 1]]);
    expect(json.json.clock).toBe('wall');
    const business = await h.api('GET', `/api/ops/reports?${query}&clock=business`, { token: sup.token });
    expect(business.json.clock).toBe('business');
    expect(business.json.clockNote).toContain('business');
    const csv = await fetch(`${h.baseUrl}/api/ops/reports?${query}&format=csv`, { headers: { authorization: `Bearer ${sup.token}` } });
    expect(csv.headers.get('content-type')).toContain('text/csv');
    const lines = (await csv.text()).trim().split('\n');
    expect(lines[0]).toMatch(/^group_by,key,label,messages_in,/);
    expect(lines).toHaveLength(3);
    expect(lines[1]).toMatch(/^channel,sms,sms,1,0,/);
    expect((await h.api('GET', `/api/ops/reports?from=${today}&to=${today}`, { token: sup.token })).status).toBe(400);
    const badZone = await h.api('GET', `/api/ops/reports?from=${today}&to=${today}&tz=Mars/Olympus`, { token: sup.token });
    expect(badZone.status).toBe(400);
    expect(badZone.json.details[0].path).toBe('tz');
    expect((await h.api('GET', `/api/ops/reports?${query}`, { token: coordinator.token })).status).toBe(403);
    const daily = await h.api('GET', `/api/ops/reports/daily?${query}`, { token: sup.token });
    expect(daily.status).toBe(200);
    expect(daily.json.days).toHaveLength(1);
    expect(daily.json.days[0].total.messagesIn).toBe(1);
  });
});
