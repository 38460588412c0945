import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Db } from '../db/db.ts';
import { insertCoordinator } from '../db/coordinators.ts';
import { backends, type TestDatabase } from '../test/databases.ts';
import { AlertRuleSchema } from './alert-rules.ts';
import { evaluateRule } from './alerts.ts';

const T = Date.parse('2026-11-24T12:00:00Z');
const at = (offsetMs: number) => new Date(T + offsetMs).toISOString();
const MIN = 60_000;

async function patient(db: Db): Promise<string> {
  return (await db.query<{ id: string }>(`INSERT INTO patients DEFAULT VALUES RETURNING id`)).rows[0]!.id;
}

async function message(db: Db, args: { patientId: string; seq: number; direction: 'inbound' | 'outbound'; channel?: string; status: string; createdAt: string; statusAt?: string }): Promise<string> {
  return (await db.query<{ id: string }>(
    `INSERT INTO messages (patient_id, seq, direction, channel, address, body, status, created_at, status_updated_at)
     VALUES ($1, $2, $3, $4, 'x', 'b', $5, $6, $7) RETURNING id`,
    [args.patientId, args.seq, args.direction, args.channel ?? 'sms', args.status, args.createdAt, args.statusAt ?? args.createdAt],
  )).rows[0]!.id;
}

describe.each(backends())('alert rule kinds on $name', (backend) => {
  let database: TestDatabase;
  let db: Db;
  beforeEach(async () => {
    database = await backend.create();
    db = database.db;
  });
  afterEach(() => database.drop());

  it('delivery_failure_rate: above the threshold, over the window, with enough messages', async () => {
    const rule = AlertRuleSchema.parse({ id: 'd', kind: 'delivery_failure_rate', windowMinutes: 10, thresholdPercent: 5, minMessages: 20 });
    const p = await patient(db);
    for (let i = 0; i < 20; i += 1) {
      await message(db, { patientId: p, seq: i + 1, direction: 'outbound', status: i === 0 ? 'failed' : 'delivered', createdAt: at(-5 * MIN), statusAt: at(-5 * MIN) });
    }
    // 1 of 20 is 5 %: not above 5 %.
    expect(await evaluateRule(db, rule, new Date(T))).toEqual([]);
    await db.query(`UPDATE messages SET status = 'undelivered' WHERE seq = 2`);
    const two = await evaluateRule(db, rule, new Date(T));
    expect(two.map((c) => [c.subject, c.value])).toEqual([['delivery', 10]]);
    // Eleven minutes later the window holds nothing.
    expect(await evaluateRule(db, rule, new Date(T + 6 * MIN))).toEqual([]);
    // Too few outcomes say nothing.
    expect(await evaluateRule(db, AlertRuleSchema.parse({ id: 'd', kind: 'delivery_failure_rate', minMessages: 21 }), new Date(T))).toEqual([]);
  });

  it('outbox_oldest: an undelivered row older than the threshold', async () => {
    const rule = AlertRuleSchema.parse({ id: 'o', kind: 'outbox_oldest', thresholdSeconds: 60 });
    const p = await patient(db);
    const m = await message(db, { patientId: p, seq: 1, direction: 'outbound', status: 'pending', createdAt: at(-61_000) });
    await db.query(`INSERT INTO outbox (message_id, patient_id, seq, created_at) VALUES ($1, $2, 1, $3)`, [m, p, at(-61_000)]);
    expect((await evaluateRule(db, rule, new Date(T))).map((c) => c.subject)).toEqual(['outbox']);
    expect(await evaluateRule(db, rule, new Date(T - 2_000))).toEqual([]);
    await db.query(`UPDATE outbox SET state = 'sent'`);
    expect(await evaluateRule(db, rule, new Date(T))).toEqual([]);
  });

  it('webhook_silence: silent longer than usual for that channel', async () => {
    const rule = AlertRuleSchema.parse({ id: 'w', kind: 'webhook_silence', factor: 3, minMinutes: 30, minMessages: 20, lookbackDays: 7 });
    const p = await patient(db);
    // SMS every 5 minutes for 3 hours, the last at T; three WhatsApp messages (too few to know what is usual).
    for (let i = 0; i < 36; i += 1) await message(db, { patientId: p, seq: i + 1, direction: 'inbound', status: 'received', createdAt: at(-(35 - i) * 5 * MIN) });
    for (let i = 0; i < 3; i += 1) await message(db, { patientId: p, seq: 100 + i, direction: 'inbound', channel: 'whatsapp', status: 'received', createdAt: at(-i * 600 * MIN) });
    expect(await evaluateRule(db, rule, new Date(T + 29 * MIN))).toEqual([]);
    const silent = await evaluateRule(db, rule, new Date(T + 31 * MIN));
    expect(silent.map((c) => c.subject)).toEqual(['channel:sms']);
    expect(silent[0]!.summary).toContain('usually at most 5 min');
    // "Usual" scales with the factor: 7 × 5 min = 35 min of silence is still usual.
    expect(await evaluateRule(db, AlertRuleSchema.parse({ id: 'w', kind: 'webhook_silence', factor: 7 }), new Date(T + 31 * MIN))).toEqual([]);
  });

  it('coordinator_over_capacity: more assigned patients than capacity', async () => {
    const rule = AlertRuleSchema.parse({ id: 'c', kind: 'coordinator_over_capacity' });
    const c = (await insertCoordinator(db, { email: 'cap@test', name: 'Cap', role: 'coordinator', passwordHash: 'x' }))!;
    await db.query(`UPDATE coordinators SET capacity = 1 WHERE id = $1`, [c.id]);
    await db.query(`INSERT INTO assignments (patient_id, coordinator_id) VALUES ($1, $2)`, [await patient(db), c.id]);
    expect(await evaluateRule(db, rule, new Date(T))).toEqual([]);
    await db.query(`INSERT INTO assignments (patient_id, coordinator_id) VALUES ($1, $2)`, [await patient(db), c.id]);
    const over = await evaluateRule(db, rule, new Date(T));
    expect(over.map((x) => [x.subject, x.value])).toEqual([[`coordinator:${c.id}`, 2]]);
  });
});
