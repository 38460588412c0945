import { createServer, request as httpRequest, type Server } from 'node:http';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildAdapters } from '../channels/index.ts';
import { createPostgresDb, type Db } from '../db/db.ts';
import { insertCoordinator } from '../db/coordinators.ts';
import { createOutbound } from '../db/messages.ts';
import { WORKER_LOCK_SPACE } from '../db/outbox.ts';
import { recordInbound } from '../db/patients.ts';
import { isStorageUnavailable } from '../errors.ts';
import { isPostgresAvailable, postgresBackend, type TestDatabase } from '../test/databases.ts';
import { startFakeTwilio, type FakeTwilio } from '../test/fake-twilio.ts';
import { eventually, TEST_TWILIO } from '../test/harness.ts';
import { startTcpProxy, type TcpProxy } from '../test/tcp-proxy.ts';
import { startOutboxRelay, type OutboxRelay } from './relay.ts';

const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

// Connections that PostgreSQL drops (a restart, a failover, pg_terminate_backend): PGlite lives in the process and
// cannot lose them, so these run on PostgreSQL only.
describe.skipIf(!isPostgresAvailable())('when PostgreSQL drops our connections (PostgreSQL only)', () => {
  let database: TestDatabase;
  let fake: FakeTwilio;
  const closers: Array<() => Promise<unknown>> = [];

  beforeEach(async () => {
    database = await postgresBackend.create();
    fake = await startFakeTwilio({ accountSid: TEST_TWILIO.accountSid, authToken: TEST_TWILIO.authToken });
  });
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close().catch(() => {});
    await fake.close();
    await database.drop();
  });

  const terminate = (where: string, params: unknown[] = []) =>
    database.db.query<{ n: number }>(`SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND ${where}`, params);

  function openDb(connectionString = database.url!): Db {
    const db = createPostgresDb({ connectionString, poolSize: 4 });
    closers.push(() => db.close());
    return db;
  }

  async function startRelay(db: Db, apiBase = fake.url): Promise<OutboxRelay> {
    const adapters = buildAdapters({ publicBaseUrl: 'http://127.0.0.1:9', sendTimeoutMs: 2_000, twilio: { ...TEST_TWILIO, apiBase } });
    const relay = await startOutboxRelay({ db, adapters, logger, maxInFlight: 10, sendTimeoutMs: 2_000, pollMs: 100, backoff: { baseMs: 20, capMs: 200 } });
    closers.push(() => relay.stop());
    return relay;
  }

  async function reply(phone: string, body: string): Promise<string> {
    const { db } = database;
    const coordinator = (await insertCoordinator(db, { email: `c-${phone}@test`, name: 'C', role: 'coordinator', passwordHash: 'x' }))!;
    const inbound = await recordInbound(db, { kind: 'inbound', channel: 'sms', provider: 'twilio', providerMessageId: `SM${phone.slice(1)}`, from: phone, to: TEST_TWILIO.fromNumber, body: 'hi', media: [] });
    const created = await createOutbound(db, { patientId: inbound.patientId, authorId: coordinator.id, body });
    if ('error' in created) throw new Error(created.error);
    return created.messageId;
  }

  const outboxRow = async (messageId: string) =>
    (await database.db.query<{ state: string; attempts: number; claimed_by: number | null; last_error: string | null }>(`SELECT state, attempts, claimed_by, last_error FROM outbox WHERE message_id = $1`, [messageId])).rows[0]!;

  it('a query on a connection the server terminates fails as storage-unavailable; the process does not crash', async () => {
    const db = openDb();
    const running = db.transaction((tx) => tx.query(`SELECT pg_sleep(30)`));
    await eventually(async () => (await terminate(`query LIKE 'SELECT pg_sleep%'`)).rows[0]!.n === 1, { what: 'the sleeping backend terminated' });
    const error = await running.then(() => null, (e: unknown) => e);
    expect(isStorageUnavailable(error)).toBe(true);
    // The pool hands out a working connection afterwards.
    expect((await db.query<{ one: number }>('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  });

  it('LISTEN is re-established after its connection is terminated, and subscribers are told they may have missed notifications', async () => {
    const db = openDb();
    const payloads: string[] = [];
    let reconnects = 0;
    await db.listen('restart_test', (payload) => payloads.push(payload), { onReconnect: () => (reconnects += 1) });
    await database.db.query(`SELECT pg_notify('restart_test', 'before')`);
    await eventually(() => payloads.includes('before'), { what: 'the first notification' });
    expect((await terminate(`application_name LIKE '%-listen'`)).rows[0]!.n).toBe(1);
    await eventually(() => reconnects === 1, { what: 'the reconnect callback' });
    await database.db.query(`SELECT pg_notify('restart_test', 'after')`);
    await eventually(() => payloads.includes('after'), { what: 'a notification after the reconnect' });
  });

  it('a worker whose liveness session is terminated mid-send: the send is not repeated by anyone, and the worker registers again', async () => {
    const a = await startRelay(openDb());
    const firstKey = a.workerKey;
    // Twilio is slow for this send: the worker is mid-send when its session goes.
    fake.enqueueFault({ kind: 'latency', ms: 1_500 });
    const messageId = await reply('+15550001111', 'sent exactly once');
    await eventually(async () => (await outboxRow(messageId)).claimed_by === firstKey, { what: 'the send claimed by worker A' });
    const terminated = await terminate(`pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::oid AND objid = $2::oid AND objsubid = 2)`, [WORKER_LOCK_SPACE, firstKey]);
    expect(terminated.rows[0]!.n).toBe(1);
    // Another worker is ready to take over what looks orphaned.
    const b = await startRelay(openDb());
    await eventually(async () => (await outboxRow(messageId)).state === 'sent', { timeoutMs: 20_000, what: 'the reply sent' });
    await eventually(() => a.workerKey !== firstKey, { what: 'worker A registered under a new key' });
    // A still delivers under its new key, and nothing was sent twice.
    const second = await reply('+15550002222', 'after the new registration');
    await eventually(async () => (await outboxRow(second)).state === 'sent', { what: 'a later reply sent' });
    await a.stop();
    await b.stop();
    expect(fake.received.map((m) => m.body).sort()).toEqual(['after the new registration', 'sent exactly once']);
  });

  it('a database outage during the lookup before a resend is not a provider attempt: no attempt counted, no error recorded', async () => {
    const target = new URL(database.url!);
    const proxy: TcpProxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    closers.push(() => proxy.close());
    target.host = `127.0.0.1:${proxy.port}`;
    // A tripwire in front of the fake: the relay's lookup at Twilio (GET …/Messages.json) cuts our database first.
    let tripped = false;
    const tripwire: Server = createServer((req, res) => {
      void (async () => {
        if (req.method === 'GET' && !tripped) {
          tripped = true;
          await proxy.cut();
        }
        const upstream = httpRequest(new URL(req.url!, fake.url), { method: req.method, headers: req.headers }, (answer) => {
          res.writeHead(answer.statusCode!, answer.headers);
          answer.pipe(res);
        });
        req.pipe(upstream);
      })();
    });
    await new Promise<void>((resolve) => tripwire.listen(0, '127.0.0.1', resolve));
    closers.push(() => new Promise((resolve) => tripwire.close(resolve)));
    const address = tripwire.address() as { port: number };
    // The first send fails with a 5xx (outcome unknown), so the next claim looks the message up first.
    fake.enqueueFault({ kind: 'status', status: 503 });
    const messageId = await reply('+15550003333', 'looked up during an outage');
    await startRelay(openDb(target.toString()), `http://127.0.0.1:${address.port}`);
    await eventually(() => tripped, { what: 'the lookup began' });
    await proxy.restore();
    await eventually(async () => (await outboxRow(messageId)).state === 'sent', { timeoutMs: 20_000, what: 'the reply sent after the outage' });
    // Two attempts reached Twilio: the 503 and the send. The lookup that met the outage is not one of them.
    expect(await outboxRow(messageId)).toMatchObject({ state: 'sent', attempts: 2 });
    expect(fake.received.map((m) => m.body)).toEqual(['looked up during an outage']);
  });
});
