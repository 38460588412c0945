import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildAdapters, type AdapterSettings } from '../channels/index.ts';
import { insertCoordinator } from '../db/coordinators.ts';
import { startOutboxRelay, type OutboxRelay } from '../outbox/relay.ts';
import { hashPassword } from '../security/passwords.ts';
import { startWeb, type WebService } from '../services/web.ts';
import { backends, type TestDatabase } from '../test/databases.ts';
import { startFakeTelnyx, type FakeTelnyx } from '../test/fake-telnyx.ts';
import { startFakeTwilio, type FakeTwilio } from '../test/fake-twilio.ts';
import { eventually, freePort, TEST_TWILIO } from '../test/harness.ts';

const TELNYX_KEY = 'KEY_switch_test_0123456789';
const OUR_NUMBER = '+15005550006';
const PATIENT = '+15551230077';

/**
 * One database, two lives of the app: first with SMS_PROVIDER=twilio, then restarted with SMS_PROVIDER=telnyx.
 * Built by hand rather than with startHarness because the point is to keep the database across the restart.
 */
describe.each(backends())('switching SMS_PROVIDER on $name', (backend) => {
  let database: TestDatabase;
  let twilio: FakeTwilio;
  let telnyx: FakeTelnyx;
  const running: Array<{ web: WebService; relay: OutboxRelay }> = [];
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

  beforeEach(async () => {
    database = await backend.create();
    twilio = await startFakeTwilio({ accountSid: TEST_TWILIO.accountSid, authToken: TEST_TWILIO.authToken, autoStatuses: ['sent', 'delivered'], autoStatusDelayMs: 5 });
    telnyx = await startFakeTelnyx({ apiKey: TELNYX_KEY, autoStatuses: ['sent', 'delivered'], autoStatusDelayMs: 5 });
  });
  afterEach(async () => {
    await stopApp();
    await twilio.close();
    await telnyx.close();
    await database.drop();
  });

  async function startApp(provider: 'twilio' | 'telnyx') {
    const port = await freePort();
    const baseUrl = `http://127.0.0.1:${port}`;
    const settings: AdapterSettings =
      provider === 'twilio'
        ? { publicBaseUrl: baseUrl, sendTimeoutMs: 2_000, smsProvider: 'twilio', twilio: { ...TEST_TWILIO, apiBase: twilio.url } }
        : { publicBaseUrl: baseUrl, sendTimeoutMs: 2_000, smsProvider: 'telnyx', telnyx: { apiKey: TELNYX_KEY, publicKey: telnyx.publicKey, fromNumber: OUR_NUMBER, apiBase: `${telnyx.url}/v2` } };
    const adapters = buildAdapters(settings);
    const web = await startWeb({ db: database.db, logger, adapters, publicBaseUrl: baseUrl, tokenTtlMs: 3_600_000, host: '127.0.0.1', port });
    const relay = await startOutboxRelay({ db: database.db, adapters, logger, maxInFlight: 10, sendTimeoutMs: 2_000, pollMs: 200, backoff: { baseMs: 20, capMs: 200 } });
    running.push({ web, relay });
    const api = async (method: string, path: string, token: string, body?: unknown) => {
      const response = await fetch(baseUrl + path, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: response.status, json: (await response.json()) as any };
    };
    return { baseUrl, api };
  }

  async function stopApp() {
    for (const { web, relay } of running.splice(0)) {
      await relay.stop();
      await web.stop();
    }
  }

  it('keeps the patient, their identity and one timeline; the next reply goes out through the new provider exactly once', async () => {
    await insertCoordinator(database.db, { email: 'ada@test.switchboard', name: 'Ada', role: 'coordinator', passwordHash: await hashPassword('password-for-ada') });

    // Life 1: Twilio.
    const first = await startApp('twilio');
    const login = await fetch(`${first.baseUrl}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: 'ada@test.switchboard', password: 'password-for-ada' }) });
    const token = ((await login.json()) as { token: string }).token;
    expect((await twilio.sendInboundSms({ webhookUrl: `${first.baseUrl}/webhooks/twilio/sms`, from: PATIENT, to: OUR_NUMBER, body: 'via twilio' })).status).toBe(200);
    const patientId = (await first.api('GET', '/api/inbox', token)).json.patients[0].patientId;
    expect((await first.api('POST', `/api/patients/${patientId}/messages`, token, { body: 'reply one' })).status).toBe(201);
    await eventually(async () => (await first.api('GET', `/api/patients/${patientId}/timeline`, token)).json.items.some((i: any) => i.body === 'reply one' && i.status === 'delivered'), {
      what: 'reply one delivered through Twilio',
    });
    await stopApp();

    // Life 2: same database, SMS_PROVIDER=telnyx. The Twilio webhook is gone; the token still works.
    const second = await startApp('telnyx');
    expect((await twilio.sendInboundSms({ webhookUrl: `${second.baseUrl}/webhooks/twilio/sms`, from: PATIENT, to: OUR_NUMBER, body: 'lost' })).status).toBe(404);
    expect((await telnyx.sendInboundSms({ webhookUrl: `${second.baseUrl}/webhooks/telnyx/sms`, from: PATIENT, to: OUR_NUMBER, body: 'via telnyx' })).status).toBe(200);

    const inbox = (await second.api('GET', '/api/inbox', token)).json.patients;
    expect(inbox.map((p: any) => p.patientId)).toEqual([patientId]);
    const identities = (await second.api('GET', `/api/patients/${patientId}/identities`, token)).json.identities;
    expect(identities.map((i: any) => [i.channel, i.address])).toEqual([['sms', PATIENT]]);

    const sent = await second.api('POST', `/api/patients/${patientId}/messages`, token, { body: 'reply two' });
    expect(sent.status).toBe(201);
    expect(sent.json).toMatchObject({ channel: 'sms', address: PATIENT });
    const items = await eventually(
      async () => {
        const timeline = (await second.api('GET', `/api/patients/${patientId}/timeline`, token)).json.items as any[];
        return timeline.some((i) => i.body === 'reply two' && i.status === 'delivered') && timeline;
      },
      { what: 'reply two delivered through Telnyx' },
    );
    const messages = items.filter((i) => i.type === 'message');
    expect(messages.map((m) => [m.direction, m.body, m.provider, m.address])).toEqual([
      ['inbound', 'via twilio', 'twilio', PATIENT],
      ['outbound', 'reply one', 'twilio', PATIENT],
      ['inbound', 'via telnyx', 'telnyx', PATIENT],
      ['outbound', 'reply two', 'telnyx', PATIENT],
    ]);
    expect(items.map((i) => i.seq)).toEqual(items.map((_, i) => i + 1));
    expect(telnyx.received.map((m) => [m.to, m.from, m.body])).toEqual([[PATIENT, OUR_NUMBER, 'reply two']]);
    expect(twilio.received.map((m) => m.body)).toEqual(['reply one']);
    expect(messages.at(-1).providerMessageId).toBe(telnyx.received[0]!.sid);
  });

  it('over HTTP with Telnyx: duplicates stored once, bad signatures refused and nothing stored, unknown events acknowledged', async () => {
    const app = await startApp('telnyx');
    const id = 'b1c2d3e4-0000-4000-8000-000000000001';
    const results = await Promise.all([1, 2, 3].map(() => telnyx.sendInboundSms({ webhookUrl: `${app.baseUrl}/webhooks/telnyx/sms`, from: PATIENT, to: OUR_NUMBER, body: 'once', messageSid: id })));
    expect(results.map((r) => r.status)).toEqual([200, 200, 200]);

    const body = JSON.stringify({ data: { event_type: 'message.received', payload: { id: 'forged', from: { phone_number: PATIENT }, to: [{ phone_number: OUR_NUMBER }], text: 'forged' } } });
    const post = (headers: Record<string, string>, raw = body) => fetch(`${app.baseUrl}/webhooks/telnyx/sms`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: raw });
    expect((await post({})).status).toBe(403);
    const other = await startFakeTelnyx({ apiKey: TELNYX_KEY });
    expect((await post(other.signWebhook(body))).status).toBe(403);
    await other.close();
    expect((await post(telnyx.signWebhook(body, Math.floor(Date.now() / 1000) - 3600))).status).toBe(403);
    expect((await post(telnyx.signWebhook('{oops'), '{oops')).status).toBe(400);
    const unknown = JSON.stringify({ data: { event_type: 'porting_order.status_changed', payload: { id: 'p1' } } });
    expect((await post(telnyx.signWebhook(unknown), unknown)).status).toBe(200);

    const stored = await database.db.query<{ body: string; provider_message_id: string }>(`SELECT body, provider_message_id FROM messages`);
    expect(stored.rows).toEqual([{ body: 'once', provider_message_id: id }]);
  });
});
