import { createHmac } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeMetaJson } from '../test/fake-meta.ts';
import { backends } from '../test/databases.ts';
import { eventually, startHarness, TEST_META_VERIFY_TOKEN, type Harness } from '../test/harness.ts';

describe.each(backends())('Messenger and WhatsApp webhooks over real HTTP on $name', (backend) => {
  let h: Harness;
  let messengerHook: string;
  let whatsappHook: string;
  beforeEach(async () => {
    h = await startHarness(backend, { meta: {} });
    messengerHook = `${h.baseUrl}/webhooks/messenger`;
    whatsappHook = `${h.baseUrl}/webhooks/whatsapp`;
  });
  afterEach(async () => {
    await h.close();
  });

  const count = async (sql: string, params: unknown[] = []) => (await h.database.db.query<{ n: number }>(sql, params)).rows[0]!.n;
  const storedRows = () => count(`SELECT ((SELECT count(*) FROM messages) + (SELECT count(*) FROM patients) + (SELECT count(*) FROM delivery_events))::int AS n`);

  it.each(['messenger', 'whatsapp'])('%s: answers the subscription handshake only with the right verify token', async (channel) => {
    const url = `${h.baseUrl}/webhooks/${channel}`;
    const ok = await h.meta!.sendVerification({ webhookUrl: url, verifyToken: TEST_META_VERIFY_TOKEN, challenge: '1158201444' });
    expect(ok).toMatchObject({ status: 200, body: '1158201444' });
    expect((await h.meta!.sendVerification({ webhookUrl: url, verifyToken: 'wrong' })).status).toBe(403);
    expect((await h.meta!.sendVerification({ webhookUrl: url, verifyToken: TEST_META_VERIFY_TOKEN, mode: 'unsubscribe' })).status).toBe(403);
  });

  it.each(['messenger', 'whatsapp'])('%s: unsigned, mis-signed, malformed and oversized webhooks get 4xx and store nothing', async (channel) => {
    const url = `${h.baseUrl}/webhooks/${channel}`;
    const meta = h.meta!;
    const valid =
      channel === 'messenger'
        ? { object: 'page', entry: [{ id: meta.options.pageId, time: 1, messaging: [{ sender: { id: '123' }, recipient: { id: meta.options.pageId }, timestamp: 1, message: { mid: 'm_1', text: 'hi' } }] }] }
        : {
            object: 'whatsapp_business_account',
            entry: [{ id: 'w', changes: [{ field: 'messages', value: { metadata: { display_phone_number: meta.options.displayPhoneNumber, phone_number_id: meta.options.phoneNumberId }, messages: [{ from: '15551230000', id: 'wamid.1', timestamp: '1', type: 'text', text: { body: 'hi' } }] } }] }],
          };
    const body = encodeMetaJson(valid);
    expect((await meta.postWebhook({ webhookUrl: url, body, signature: null })).status).toBe(403);
    expect((await meta.postWebhook({ webhookUrl: url, body, signature: 'sha256=' + '0'.repeat(64) })).status).toBe(403);
    expect((await meta.postWebhook({ webhookUrl: url, body, signature: 'sha1=abc' })).status).toBe(403);
    // A valid signature of other bytes: the body was changed in transit.
    const signatureOfBody = 'sha256=' + createHmac('sha256', meta.options.appSecret).update(body).digest('hex');
    expect((await meta.postWebhook({ webhookUrl: url, body: body.replace('"hi"', '"ho"'), signature: signatureOfBody })).status).toBe(403);
    // The same bytes re-serialised (as a JSON body parser would) no longer match either.
    expect((await meta.postWebhook({ webhookUrl: url, body: JSON.stringify(JSON.parse(body), null, 1), signature: signatureOfBody })).status).toBe(403);
    const notJson = await meta.postWebhook({ webhookUrl: url, body: '{"object":' });
    expect(notJson.status).toBe(400);
    expect(JSON.parse(notJson.body)).toMatchObject({ code: 'invalid_webhook' });
    const wrongShape = await meta.postWebhook({ webhookUrl: url, body: encodeMetaJson({ object: channel === 'messenger' ? 'page' : 'whatsapp_business_account', entry: 'nope' }) });
    expect(wrongShape.status).toBe(400);
    const huge = await meta.postWebhook({ webhookUrl: url, body: encodeMetaJson({ ...valid, padding: 'x'.repeat(300 * 1024) }) });
    expect(huge.status).toBe(413);
    expect(await storedRows()).toBe(0);
  });

  it('the coordinator API still parses JSON bodies', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    expect(ada.token).toBeTruthy();
    const bad = await h.api('POST', '/api/auth/login', { body: { email: 'not-an-email', password: 'x' } });
    expect(bad.status).toBe(400);
    expect(bad.json.code).toBe('invalid_input');
  });

  it('Messenger: stores a message once per mid, ignores echoes and unknown event types, keeps a batch in timestamp order', async () => {
    await h.createCoordinator({ name: 'Ada' });
    const meta = h.meta!;
    const first = await meta.sendMessengerText({ webhookUrl: messengerHook, psid: '111', text: 'hello', mid: 'm_dup' });
    expect(first.status).toBe(200);
    // Meta redelivers the same bytes.
    expect((await meta.postWebhook({ webhookUrl: messengerHook, body: first.rawBody })).status).toBe(200);
    expect((await meta.sendMessengerEcho({ webhookUrl: messengerHook, psid: '111', text: 'our own reply' })).status).toBe(200);
    const postback = await meta.sendMessengerBatch({ webhookUrl: messengerHook, entries: [[{ type: 'raw', event: { sender: { id: '111' }, recipient: { id: meta.options.pageId }, timestamp: 5, postback: { title: 'Get started', payload: 'GET_STARTED' } } }]] });
    expect(postback.status).toBe(200);
    expect(await count(`SELECT count(*)::int AS n FROM messages`)).toBe(1);

    const t = Date.now();
    const batch = await meta.sendMessengerBatch({
      webhookUrl: messengerHook,
      entries: [
        [{ type: 'text', psid: '222', text: 'second', mid: 'm_b2', timestamp: t + 2000 }],
        [
          { type: 'text', psid: '222', text: 'first', mid: 'm_b1', timestamp: t + 1000 },
          { type: 'text', psid: '222', text: 'third', mid: 'm_b3', timestamp: t + 3000 },
        ],
      ],
    });
    expect(batch.status).toBe(200);
    const rows = await h.database.db.query<{ body: string }>(`SELECT body FROM messages WHERE address = '222' ORDER BY seq`);
    expect(rows.rows.map((r) => r.body)).toEqual(['first', 'second', 'third']);
  });

  it('Messenger: delivery and read watermarks advance outbound statuses, never backwards', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    const meta = h.meta!;
    await meta.sendMessengerText({ webhookUrl: messengerHook, psid: '333', text: 'hi' });
    const patientId = (await h.api('GET', '/api/inbox', { token: ada.token })).json.patients[0].patientId;
    await h.startRelay();
    const sent = await h.api('POST', `/api/patients/${patientId}/messages`, { token: ada.token, body: { body: 'hello back' } });
    expect(sent.json.channel).toBe('messenger');
    const status = async () => (await h.database.db.query<{ status: string }>(`SELECT status FROM messages WHERE id = $1`, [sent.json.messageId])).rows[0]!.status;
    await eventually(async () => (await status()) === 'queued', { what: 'sent to Meta' });
    expect((await meta.sendMessengerRead({ webhookUrl: messengerHook, psid: '333', watermark: Date.now() + 60_000 })).status).toBe(200);
    expect(await status()).toBe('read');
    const mid = meta.received[0]!.id;
    expect((await meta.sendMessengerDelivery({ webhookUrl: messengerHook, psid: '333', mids: [mid], watermark: Date.now() + 60_000 })).status).toBe(200);
    expect(await status()).toBe('read');
  });

  it('WhatsApp: dedupes by wamid, E.164 addresses, statuses forward-only in any order', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    const meta = h.meta!;
    const inbound = await meta.sendWhatsAppText({ webhookUrl: whatsappHook, from: '15557654321', text: 'hola', id: 'wamid.same' });
    expect(inbound.status).toBe(200);
    expect((await meta.postWebhook({ webhookUrl: whatsappHook, body: inbound.rawBody })).status).toBe(200);
    expect(await count(`SELECT count(*)::int AS n FROM messages WHERE provider_message_id = 'wamid.same'`)).toBe(1);
    expect(await count(`SELECT count(*)::int AS n FROM channel_identities WHERE channel = 'whatsapp' AND address = '+15557654321'`)).toBe(1);

    const patientId = (await h.api('GET', '/api/inbox', { token: ada.token })).json.patients[0].patientId;
    await h.startRelay();
    const sent = await h.api('POST', `/api/patients/${patientId}/messages`, { token: ada.token, body: { body: 'hi there' } });
    expect(sent.json).toMatchObject({ channel: 'whatsapp', address: '+15557654321' });
    const wamid = (await eventually(() => meta.received.find((m) => m.api === 'whatsapp'))).id;
    await eventually(async () => (await h.database.db.query(`SELECT 1 FROM messages WHERE provider_message_id = $1`, [wamid])).rowCount === 1);
    // One webhook carrying read before delivered before sent, plus a status type we do not track.
    const batch = await meta.sendWhatsAppBatch({
      webhookUrl: whatsappHook,
      entries: [[{ type: 'status', id: wamid, status: 'read' }, { type: 'status', id: wamid, status: 'delivered' }, { type: 'status', id: wamid, status: 'sent' }, { type: 'status', id: wamid, status: 'deleted' }]],
    });
    expect(batch.status).toBe(200);
    const row = await h.database.db.query<{ status: string }>(`SELECT status FROM messages WHERE provider_message_id = $1`, [wamid]);
    expect(row.rows[0]!.status).toBe('read');
    expect((await meta.sendWhatsAppStatus({ webhookUrl: whatsappHook, id: wamid, status: 'failed', errorCode: 131026 })).status).toBe(200);
    expect((await h.database.db.query<{ status: string }>(`SELECT status FROM messages WHERE provider_message_id = $1`, [wamid])).rows[0]!.status).toBe('read');
  });
});
