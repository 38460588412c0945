import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPostgresAvailable, postgresBackend, type TestDatabase } from '../test/databases.ts';
import { eventually, TEST_TWILIO } from '../test/harness.ts';
import { startFakeTwilio, type FakeTwilio } from '../test/fake-twilio.ts';
import { recordInbound } from '../db/patients.ts';
import { createOutbound } from '../db/messages.ts';
import { insertCoordinator } from '../db/coordinators.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PATIENTS = 50;
const REPLIES = 1_000;
const WORKERS = 3;
const MIN_KILLS = 5;

// Several processes on one database: PGlite is single-process by design, so this proof runs on PostgreSQL only.
describe.skipIf(!isPostgresAvailable())('crash test: 3 worker processes, SIGKILLs and a faulty provider (PostgreSQL)', () => {
  let database: TestDatabase;
  let fake: FakeTwilio;
  const workers = new Set<ChildProcess>();

  beforeAll(async () => {
    database = await postgresBackend.create();
    fake = await startFakeTwilio({ accountSid: TEST_TWILIO.accountSid, authToken: TEST_TWILIO.authToken });
  });
  afterAll(async () => {
    for (const worker of workers) worker.kill('SIGKILL');
    await fake?.close();
    await database?.drop();
  });

  function startWorker(): ChildProcess {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', '--role', 'worker'], {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'inherit'],
      env: {
        PATH: process.env.PATH,
        DATABASE_URL: database.url,
        DATABASE_POOL_SIZE: '4',
        TWILIO_ACCOUNT_SID: TEST_TWILIO.accountSid,
        TWILIO_AUTH_TOKEN: TEST_TWILIO.authToken,
        TWILIO_FROM_NUMBER: TEST_TWILIO.fromNumber,
        TWILIO_API_BASE: fake.url,
        PUBLIC_BASE_URL: 'http://127.0.0.1:9',
        SEND_TIMEOUT_MS: '400',
        OUTBOX_BATCH_SIZE: '4',
        OUTBOX_POLL_MS: '100',
        // The fake answers within 90 ms: a short settle keeps this test's lookups quick without racing them.
        OUTBOX_SETTLE_MS: '1000',
        LOG_LEVEL: 'fatal',
      },
    });
    workers.add(child);
    child.on('exit', () => workers.delete(child));
    return child;
  }

  it(`delivers ${REPLIES} replies for ${PATIENTS} patients exactly once and in order`, async () => {
    const { db } = database;
    const coordinator = await insertCoordinator(db, { email: 'crash@test', name: 'Crash', role: 'coordinator', passwordHash: 'x' });
    const phones = Array.from({ length: PATIENTS }, (_, i) => `+1555800${String(i).padStart(4, '0')}`);
    const patientIds: string[] = [];
    for (const [i, phone] of phones.entries()) {
      const inbound = await recordInbound(db, { kind: 'inbound', channel: 'sms', provider: 'twilio', providerMessageId: `SMcrash${i}`, from: phone, to: TEST_TWILIO.fromNumber, body: 'hi', media: [] });
      patientIds.push(inbound.patientId);
    }
    const expected = new Map<string, string[]>(phones.map((phone) => [phone, []]));
    for (let i = 0; i < REPLIES; i++) {
      const p = i % PATIENTS;
      const body = `reply ${Math.floor(i / PATIENTS)} to ${phones[p]}`;
      const created = await createOutbound(db, { patientId: patientIds[p]!, authorId: coordinator!.id, body });
      expect('error' in created).toBe(false);
      expected.get(phones[p]!)!.push(body);
    }

    fake.setFaults({ latencyMs: [20, 90], rate429: 0.05, rate5xx: 0.05, rateDropAfterAccept: 0.05, rateTimeout: 0.01, seed: 42 } as Parameters<FakeTwilio['setFaults']>[0]);
    for (let i = 0; i < WORKERS; i++) startWorker();

    const remaining = async () => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM outbox WHERE state <> 'sent'`)).rows[0]!.n;
    let kills = 0;
    let left = await remaining();
    let leftAtLastKill = Number.POSITIVE_INFINITY;
    while (left > 0) {
      await new Promise((resolve) => setTimeout(resolve, 300 + Math.random() * 700));
      left = await remaining();
      // Kill only after some delivery since the last kill: a worker takes seconds to boot on a slow machine, and
      // killing faster than workers come up would test nothing but the timeout.
      if (left === 0 || left >= leftAtLastKill) continue;
      leftAtLastKill = left;
      const victims = [...workers];
      const victim = victims[Math.floor(Math.random() * victims.length)];
      if (!victim) continue;
      victim.kill('SIGKILL');
      kills += 1;
      startWorker();
    }
    await eventually(async () => (await remaining()) === 0, { timeoutMs: 120_000, what: 'every outbox row sent' });
    expect(kills).toBeGreaterThanOrEqual(MIN_KILLS);

    for (const phone of phones) {
      expect(fake.received.filter((m) => m.to === phone).map((m) => m.body)).toEqual(expected.get(phone));
    }
    expect(fake.received).toHaveLength(REPLIES);
    const recorded = await db.query<{ sid: string }>(`SELECT provider_message_id AS sid FROM messages WHERE direction = 'outbound'`);
    expect(new Set(recorded.rows.map((r) => r.sid))).toEqual(new Set(fake.received.map((m) => m.sid)));
  }, 300_000);
});
