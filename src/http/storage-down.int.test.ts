import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildAdapters } from '../channels/index.ts';
import { createPostgresDb, type Db } from '../db/db.ts';
import { isPostgresAvailable, postgresBackend, type TestDatabase } from '../test/databases.ts';
import { freePort, TEST_TWILIO } from '../test/harness.ts';
import { startFakeTwilio, type FakeTwilio } from '../test/fake-twilio.ts';
import { startTcpProxy, type TcpProxy } from '../test/tcp-proxy.ts';
import { startWeb, type WebService } from '../services/web.ts';

// An outage needs a database that can go away and come back; the embedded PGlite lives and dies with the process.
describe.skipIf(!isPostgresAvailable())('when PostgreSQL is unreachable (PostgreSQL only)', () => {
  let database: TestDatabase;
  let proxy: TcpProxy;
  let db: Db;
  let fake: FakeTwilio;
  let web: WebService;
  let baseUrl: string;

  beforeAll(async () => {
    database = await postgresBackend.create();
    const target = new URL(database.url!);
    proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    target.host = `127.0.0.1:${proxy.port}`;
    db = createPostgresDb({ connectionString: target.toString(), poolSize: 4 });
    fake = await startFakeTwilio({ accountSid: TEST_TWILIO.accountSid, authToken: TEST_TWILIO.authToken });
    const port = await freePort();
    baseUrl = `http://127.0.0.1:${port}`;
    const adapters = buildAdapters({ publicBaseUrl: baseUrl, sendTimeoutMs: 2000, twilio: { ...TEST_TWILIO, apiBase: fake.url } });
    web = await startWeb({ db, logger: pino({ level: 'silent' }), adapters, publicBaseUrl: baseUrl, tokenTtlMs: 60_000, host: '127.0.0.1', port });
  });
  afterAll(async () => {
    await web?.stop();
    await db?.close();
    await proxy?.close();
    await fake?.close();
    await database?.drop();
  });

  it('answers a webhook 503 with Retry-After, and the provider retry later stores it exactly once', async () => {
    const sms = { webhookUrl: `${baseUrl}/webhooks/twilio/sms`, from: '+15553334444', to: TEST_TWILIO.fromNumber, body: 'are you there?', messageSid: 'SM' + 'f'.repeat(32) };
    await proxy.cut();
    const during = await fake.sendInboundSms(sms);
    expect(during.status).toBe(503);
    expect(JSON.parse(during.body)).toMatchObject({ code: 'storage_unavailable' });
    const health = await fetch(`${baseUrl}/api/health`);
    expect(health.status).toBe(503);
    expect(health.headers.get('retry-after')).toBe('5');

    await proxy.restore();
    const retried = await fake.sendInboundSms(sms);
    expect(retried.status).toBe(200);
    const again = await fake.sendInboundSms(sms);
    expect(again.status).toBe(200);
    const stored = await database.db.query<{ body: string }>(`SELECT body FROM messages`);
    expect(stored.rows).toEqual([{ body: 'are you there?' }]);
  });
});
