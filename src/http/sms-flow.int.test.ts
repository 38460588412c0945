import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { backends } from '../test/databases.ts';
import { eventually, startHarness, TEST_TWILIO, type Harness } from '../test/harness.ts';
import { signTwilioRequest } from '../test/fake-twilio.ts';

describe.each(backends())('SMS in and out over real HTTP on $name', (backend) => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness(backend, { fake: { autoStatuses: ['sent', 'delivered'], autoStatusDelayMs: 5 } });
  });
  afterEach(async () => {
    await h.close();
  });

  async function timeline(patientId: string, token: string) {
    const response = await h.api('GET', `/api/patients/${patientId}/timeline`, { token });
    expect(response.status).toBe(200);
    return response.json.items as any[];
  }

  it('inbound SMS → timeline → reply → fake Twilio → status callback → delivered', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    const inbound = await h.sendSms('+15551234567', 'Hi, can I reschedule? 🙂 café');
    expect(inbound.status).toBe(200);
    expect(inbound.body).toContain('<Response>');

    const inbox = await h.api('GET', '/api/inbox', { token: ada.token });
    expect(inbox.status).toBe(200);
    expect(inbox.json.patients).toHaveLength(1);
    const row = inbox.json.patients[0];
    expect(row.waitingSince).not.toBeNull();
    expect(row.lastMessage).toMatchObject({ body: 'Hi, can I reschedule? 🙂 café', channel: 'sms', direction: 'inbound' });

    const before = await timeline(row.patientId, ada.token);
    expect(before.filter((item) => item.type === 'message')).toMatchObject([{ direction: 'inbound', channel: 'sms', address: '+15551234567', body: 'Hi, can I reschedule? 🙂 café' }]);

    await h.startRelay();
    const sent = await h.api('POST', `/api/patients/${row.patientId}/messages`, { token: ada.token, body: { body: 'Of course — which day suits you?' } });
    expect(sent.status).toBe(201);
    expect(sent.json).toMatchObject({ channel: 'sms', address: '+15551234567' });

    const received = await eventually(() => h.fake.received.find((m) => m.body === 'Of course — which day suits you?'), { what: 'the reply at fake Twilio' });
    expect(received).toMatchObject({ to: '+15551234567', from: TEST_TWILIO.fromNumber, statusCallback: `${h.baseUrl}/webhooks/twilio/status` });

    const delivered = await eventually(
      async () => (await timeline(row.patientId, ada.token)).find((item) => item.type === 'message' && item.direction === 'outbound' && item.status === 'delivered'),
      { what: 'the delivered status' },
    );
    expect(delivered.providerMessageId).toBe(received.sid);

    const after = await h.api('GET', '/api/inbox', { token: ada.token });
    expect(after.json.patients[0].waitingSince).toBeNull();
  });

  it('stores a redelivered MessageSid once and answers 200 each time', async () => {
    await h.createCoordinator({ name: 'Ada' });
    const sid = 'SM' + 'd'.repeat(32);
    const first = await h.sendSms('+15557654321', 'first', sid);
    const again = await Promise.all([h.sendSms('+15557654321', 'first', sid), h.sendSms('+15557654321', 'first', sid)]);
    expect([first, ...again].map((r) => r.status)).toEqual([200, 200, 200]);
    const count = await h.database.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM messages WHERE provider_message_id = $1`, [sid]);
    expect(count.rows[0]!.n).toBe(1);
  });

  it('concurrent first messages from one new number make one patient', async () => {
    await h.createCoordinator({ name: 'Ada' });
    const results = await Promise.all(Array.from({ length: 5 }, (_, i) => h.sendSms('+15550001111', `burst ${i}`)));
    expect(results.every((r) => r.status === 200)).toBe(true);
    const patients = await h.database.db.query<{ n: number }>(`SELECT count(DISTINCT patient_id)::int AS n FROM messages`);
    expect(patients.rows[0]!.n).toBe(1);
    const seqs = await h.database.db.query<{ seq: number }>(`SELECT seq FROM messages ORDER BY seq`);
    expect(new Set(seqs.rows.map((r) => r.seq)).size).toBe(5);
  });

  it('a late or repeated status never moves a message backwards, and failures keep their code', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    await h.sendSms('+15551112222', 'hello');
    const patientId = (await h.api('GET', '/api/inbox', { token: ada.token })).json.patients[0].patientId;
    h.fake.setFaults({});
    await h.startRelay();
    const first = await h.api('POST', `/api/patients/${patientId}/messages`, { token: ada.token, body: { body: 'one' } });
    const second = await h.api('POST', `/api/patients/${patientId}/messages`, { token: ada.token, body: { body: 'two' } });
    expect([first.status, second.status]).toEqual([201, 201]);
    const one = await eventually(() => h.fake.received.find((m) => m.body === 'one'));
    const two = await eventually(() => h.fake.received.find((m) => m.body === 'two'));
    const status = async (body: string) =>
      (await timeline(patientId, ada.token)).find((item) => item.type === 'message' && item.body === body);
    await eventually(async () => (await status('two'))?.status === 'delivered', { what: 'auto delivered' });

    // Out of order: 'sent' after 'delivered', repeated 'delivered'.
    expect((await h.fake.sendStatusCallback({ messageSid: one.sid, status: 'sent' })).status).toBe(200);
    expect((await h.fake.sendStatusCallback({ messageSid: one.sid, status: 'delivered' })).status).toBe(200);
    expect((await status('one')).status).toBe('delivered');

    // A failure after delivery is stale; on a fresh message it sticks, with its code.
    expect((await h.fake.sendStatusCallback({ messageSid: two.sid, status: 'undelivered', errorCode: '30003' })).status).toBe(200);
    expect((await status('two')).status).toBe('delivered');
    // From here the test alone reports statuses, so the automatic 'delivered' cannot race its 'undelivered'.
    h.fake.setAutoStatuses([]);
    const three = await h.api('POST', `/api/patients/${patientId}/messages`, { token: ada.token, body: { body: 'three' } });
    expect(three.status).toBe(201);
    const sent3 = await eventually(() => h.fake.received.find((m) => m.body === 'three'));
    await h.fake.sendStatusCallback({ messageSid: sent3.sid, status: 'undelivered', errorCode: '30003' });
    await eventually(async () => (await status('three'))?.status === 'undelivered');
    await h.fake.sendStatusCallback({ messageSid: sent3.sid, status: 'sent' });
    expect(await status('three')).toMatchObject({ status: 'undelivered', errorCode: '30003' });
  });

  it('refuses unsigned, mis-signed and malformed webhooks with 4xx and stores nothing', async () => {
    const url = `${h.baseUrl}/webhooks/twilio/sms`;
    const params = { AccountSid: TEST_TWILIO.accountSid, Body: 'hi', From: '+15551230000', MessageSid: 'SM' + 'e'.repeat(32), NumMedia: '0', To: TEST_TWILIO.fromNumber };
    const form = new URLSearchParams(params).toString();
    const post = (headers: Record<string, string>, body: string) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body });

    const unsigned = await post({}, form);
    expect(unsigned.status).toBe(403);
    expect(await unsigned.json()).toMatchObject({ code: 'signature_missing' });

    const wrongKey = await post({ 'x-twilio-signature': signTwilioRequest('not-the-token', url, params) }, form);
    expect(wrongKey.status).toBe(403);
    expect(await wrongKey.json()).toMatchObject({ code: 'signature_invalid' });

    const tampered = await post({ 'x-twilio-signature': signTwilioRequest(TEST_TWILIO.authToken, url, params) }, form.replace('Body=hi', 'Body=ho'));
    expect(tampered.status).toBe(403);

    const json = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(params) });
    expect(json.status).toBe(400);
    expect(await json.json()).toHaveProperty('code');

    const signedButIncomplete = { AccountSid: TEST_TWILIO.accountSid, Body: 'hi' };
    const incomplete = await post({ 'x-twilio-signature': signTwilioRequest(TEST_TWILIO.authToken, url, signedButIncomplete) }, new URLSearchParams(signedButIncomplete).toString());
    expect(incomplete.status).toBe(400);
    expect(await incomplete.json()).toMatchObject({ code: 'invalid_webhook' });

    const huge = await post({ 'x-twilio-signature': 'x' }, `Body=${'a'.repeat(300 * 1024)}`);
    expect(huge.status).toBe(413);
    expect(await huge.json()).toMatchObject({ code: 'payload_too_large' });

    const stored = await h.database.db.query<{ n: number }>(`SELECT (SELECT count(*) FROM messages)::int + (SELECT count(*) FROM patients)::int AS n`);
    expect(stored.rows[0]!.n).toBe(0);
  });
});
