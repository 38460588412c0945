import { createHmac } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeMetaJson, startFakeMeta, startWebhookReceiver, type FakeMeta, type WebhookReceiver } from './fake-meta.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const T0 = Date.parse('2026-03-01T12:00:00Z');

describe('fake Meta Graph API', () => {
  let fake: FakeMeta;
  beforeEach(async () => {
    fake = await startFakeMeta({ templates: ['care_team_reply_waiting'] });
    fake.setClock(T0);
  });
  afterEach(async () => {
    await fake.close();
  });

  const post = async (path: string, body: unknown, token?: string) => {
    const response = await fetch(fake.url + path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
    });
    return { status: response.status, headers: response.headers, json: (await response.json()) as any };
  };
  const messenger = (body: unknown, token = fake.options.pageAccessToken) => post(`/v21.0/${fake.options.pageId}/messages`, body, token);
  const whatsapp = (body: unknown, token = fake.options.whatsappAccessToken) => post(`/v21.0/${fake.options.phoneNumberId}/messages`, body, token);
  const text = (psid: string, messagingType: string, extra: Record<string, unknown> = {}) => ({ recipient: { id: psid }, messaging_type: messagingType, message: { text: 'hi' }, ...extra });
  const waText = (to: string) => ({ messaging_product: 'whatsapp', recipient_type: 'individual', to, type: 'text', text: { preview_url: false, body: 'hi' } });

  it('a wrong or missing token is a 401 Graph OAuthException 190, on both APIs', async () => {
    for (const answer of [await messenger(text('P1', 'RESPONSE'), 'EAAwrong'), await whatsapp(waText('+16505551234'), 'EAAwrong'), await post(`/v21.0/${fake.options.pageId}/messages`, text('P1', 'RESPONSE'))]) {
      expect(answer.status).toBe(401);
      expect(answer.json).toEqual({ error: { message: expect.any(String), type: 'OAuthException', code: 190, fbtrace_id: expect.any(String) } });
    }
    expect(fake.received).toEqual([]);
    expect(fake.requests).toHaveLength(3);
  });

  it('also takes the token as the access_token query parameter, as Graph does', async () => {
    fake.setLastInbound('messenger', 'P1', T0);
    const response = await fetch(`${fake.url}/v21.0/${fake.options.pageId}/messages?access_token=${fake.options.pageAccessToken}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(text('P1', 'RESPONSE')),
    });
    expect(response.status).toBe(200);
  });

  it('Messenger: RESPONSE within 24 h, HUMAN_AGENT within 7 days, else (#10) 2018278; unknown users are 2018001', async () => {
    fake.setLastInbound('messenger', 'P1', T0 - 2 * HOUR);
    const ok = await messenger(text('P1', 'RESPONSE'));
    expect(ok.status).toBe(200);
    expect(ok.json).toEqual({ recipient_id: 'P1', message_id: expect.stringMatching(/^m_/) });
    expect(fake.received).toEqual([{ api: 'messenger', id: ok.json.message_id, to: 'P1', json: text('P1', 'RESPONSE'), receivedAtMs: T0 }]);

    fake.setClock(T0 + 2 * DAY);
    const late = await messenger(text('P1', 'RESPONSE'));
    expect(late.status).toBe(400);
    expect(late.json.error).toMatchObject({ type: 'OAuthException', code: 10, error_subcode: 2018278 });
    expect((await messenger(text('P1', 'UPDATE'))).json.error).toMatchObject({ code: 10, error_subcode: 2018278 });
    expect((await messenger(text('P1', 'MESSAGE_TAG', { tag: 'HUMAN_AGENT' }))).status).toBe(200);
    expect((await messenger(text('P1', 'MESSAGE_TAG', { tag: 'ACCOUNT_UPDATE' }))).json.error).toMatchObject({ code: 100 });
    expect((await messenger(text('P1', 'MESSAGE_TAG'))).json.error).toMatchObject({ code: 100 });

    fake.setClock(T0 + 8 * DAY);
    expect((await messenger(text('P1', 'MESSAGE_TAG', { tag: 'HUMAN_AGENT' }))).json.error).toMatchObject({ code: 10, error_subcode: 2018278 });
    expect((await messenger(text('NEVER_WROTE', 'RESPONSE'))).json.error).toMatchObject({ code: 100, error_subcode: 2018001 });
    expect((await messenger({ recipient: { id: 'P1' }, message: { text: 'x' } })).json.error).toMatchObject({ code: 100 });
    expect(fake.received).toHaveLength(2);
  });

  it('WhatsApp: text within 24 h of the last inbound, else 131047; templates any time if approved', async () => {
    fake.setLastInbound('whatsapp', '+16505551234', T0 - HOUR);
    const ok = await whatsapp(waText('+16505551234'));
    expect(ok.status).toBe(200);
    expect(ok.json).toEqual({ messaging_product: 'whatsapp', contacts: [{ input: '+16505551234', wa_id: '16505551234' }], messages: [{ id: expect.stringMatching(/^wamid\./) }] });

    fake.setClock(T0 + DAY);
    const closed = await whatsapp(waText('16505551234'));
    expect(closed.status).toBe(400);
    expect(closed.json.error).toMatchObject({ code: 131047, error_data: { messaging_product: 'whatsapp', details: expect.stringContaining('24 hours') } });
    expect((await whatsapp(waText('+447700900123'))).json.error).toMatchObject({ code: 131047 });

    const template = (name: string) => ({ messaging_product: 'whatsapp', to: '+16505551234', type: 'template', template: { name, language: { code: 'en_US' } } });
    const sent = await whatsapp(template('care_team_reply_waiting'));
    expect(sent.status).toBe(200);
    expect(sent.json.messages[0]).toMatchObject({ message_status: 'accepted' });
    const unknown = await whatsapp(template('promo_blast'));
    expect([unknown.status, unknown.json.error.code]).toEqual([404, 132001]);
    expect(fake.received.map((r) => r.json.type)).toEqual(['text', 'template']);
  });

  it('unknown objects and paths are Graph errors', async () => {
    const other = await post('/v21.0/123/messages', {}, 'x');
    expect([other.status, other.json.error.code]).toEqual([400, 100]);
    const path = await post('/v21.0/me/feed', {}, 'x');
    expect(path.json.error.code).toBe(100);
  });

  describe('faults', () => {
    beforeEach(() => {
      fake.setLastInbound('messenger', 'P1', T0);
      fake.setLastInbound('whatsapp', '16505551234', T0);
    });

    it('one-shot faults set over HTTP apply to the next request only, in order', async () => {
      for (const fault of [{ kind: 'status', status: 429 }, { kind: 'status', status: 503 }, { kind: 'latency', ms: 5 }]) {
        expect((await post('/_fake/faults/once', fault)).status).toBe(200);
      }
      const limited = await messenger(text('P1', 'RESPONSE'));
      expect([limited.status, limited.json.error.code, limited.headers.get('retry-after')]).toEqual([429, 613, '1']);
      const down = await whatsapp(waText('+16505551234'));
      expect([down.status, down.json.error.code]).toEqual([503, 2]);
      expect((await messenger(text('P1', 'RESPONSE'))).status).toBe(200);
      expect((await messenger(text('P1', 'RESPONSE'))).status).toBe(200);
      expect(fake.received).toHaveLength(2);
    });

    it('a WhatsApp 429 carries the Cloud API throughput code', async () => {
      fake.injectFault({ kind: 'status', status: 429 });
      expect((await whatsapp(waText('+16505551234'))).json.error.code).toBe(130429);
    });

    it('drop-before-accept records nothing; drop-after-accept records the message; both reset the connection', async () => {
      fake.injectFault({ kind: 'drop-before-accept' });
      await expect(messenger(text('P1', 'RESPONSE'))).rejects.toThrow();
      expect(fake.received).toHaveLength(0);
      fake.injectFault({ kind: 'drop-after-accept' });
      await expect(messenger(text('P1', 'RESPONSE'))).rejects.toThrow();
      expect(fake.received).toHaveLength(1);
    });

    it('a timeout never answers, and close() ends the held socket promptly', async () => {
      fake.injectFault({ kind: 'timeout' });
      const pending = messenger(text('P1', 'RESPONSE'));
      pending.catch(() => {});
      const deadline = Date.now() + 5_000;
      while (fake.requests.length === 0 && Date.now() < deadline) await new Promise((resolve) => setImmediate(resolve));
      await fake.close();
      await expect(pending).rejects.toThrow();
      fake = await startFakeMeta();
    });

    it('probabilistic faults with a seed repeat exactly; setFaults({}) clears them', async () => {
      const statuses = async (target: FakeMeta) => {
        target.setClock(T0);
        target.setLastInbound('messenger', 'P1', T0);
        target.setFaults({ rate429: 0.3, rate5xx: 0.3, seed: 7 });
        const out: number[] = [];
        for (let i = 0; i < 12; i++) {
          const response = await fetch(`${target.url}/v21.0/${target.options.pageId}/messages`, {
            method: 'POST',
            headers: { authorization: `Bearer ${target.options.pageAccessToken}`, 'content-type': 'application/json' },
            body: JSON.stringify(text('P1', 'RESPONSE')),
          });
          await response.arrayBuffer();
          out.push(response.status);
        }
        return out;
      };
      const second = await startFakeMeta();
      try {
        const a = await statuses(fake);
        const b = await statuses(second);
        expect(a).toEqual(b);
        expect(new Set(a).size).toBeGreaterThan(1);
        expect(fake.received).toHaveLength(a.filter((s) => s === 200).length);
      } finally {
        await second.close();
      }
      fake.setFaults({});
      expect((await messenger(text('P1', 'RESPONSE'))).status).toBe(200);
    });
  });

  it('the control API exposes the clock and what was received', async () => {
    const clock = await post('/_fake/clock', { now: '2026-04-01T00:00:00Z' });
    expect(clock.json.now).toBe('2026-04-01T00:00:00.000Z');
    await post('/_fake/last-inbound', { api: 'messenger', user: 'P9', at: '2026-03-31T12:00:00Z' });
    expect((await messenger(text('P9', 'RESPONSE'))).status).toBe(200);
    const received = (await (await fetch(`${fake.url}/_fake/received`)).json()) as any;
    expect(received.received).toEqual([expect.objectContaining({ api: 'messenger', to: 'P9', receivedAtMs: Date.parse('2026-04-01T00:00:00Z') })]);
    await post('/_fake/reset', {});
    expect(fake.received).toEqual([]);
  });
});

describe('fake Meta webhooks', () => {
  let fake: FakeMeta;
  let receiver: WebhookReceiver;
  let seen: { headers: Record<string, unknown>; raw: Buffer; method: string; query: URLSearchParams }[];

  beforeEach(async () => {
    fake = await startFakeMeta();
    seen = [];
    receiver = await startWebhookReceiver(({ method, url, request }) => {
      seen.push({ headers: request.headers, raw: request.rawBody, method, query: url.searchParams });
      return method === 'GET' ? (url.searchParams.get('hub.challenge') ?? '') : { ok: true };
    });
  });
  afterEach(async () => {
    await receiver.close();
    await fake.close();
  });

  it('signs the exact bytes it sends, with Meta-style escaping', async () => {
    const result = await fake.sendMessengerText({ webhookUrl: receiver.url + '/hook', psid: 'P1', text: 'Über 👋 a/b' });
    expect(result.status).toBe(200);
    const [request] = seen;
    const expected = 'sha256=' + createHmac('sha256', fake.options.appSecret).update(request!.raw).digest('hex');
    expect(request!.headers['x-hub-signature-256']).toBe(expected);
    expect(request!.headers['x-hub-signature']).toBe('sha1=' + createHmac('sha1', fake.options.appSecret).update(request!.raw).digest('hex'));
    expect(request!.raw.toString('latin1')).toMatch(/^[\x20-\x7e]*$/);
    expect(request!.raw.toString()).toContain('\\u00dcber \\ud83d\\udc4b a\\/b');
    expect(JSON.parse(request!.raw.toString()).entry[0].messaging[0].message.text).toBe('Über 👋 a/b');
    expect(encodeMetaJson({ a: 'é/' })).toBe('{"a":"\\u00e9\\/"}');
  });

  it('WhatsApp payloads carry string unix-second timestamps, metadata and contacts', async () => {
    fake.setClock(T0);
    await fake.sendWhatsAppText({ webhookUrl: receiver.url, from: '+16505551234', text: 'hi', id: 'wamid.A' });
    const body = JSON.parse(seen[0]!.raw.toString());
    expect(body).toMatchObject({
      object: 'whatsapp_business_account',
      entry: [
        {
          id: fake.options.wabaId,
          changes: [
            {
              field: 'messages',
              value: {
                messaging_product: 'whatsapp',
                metadata: { display_phone_number: fake.options.displayPhoneNumber, phone_number_id: fake.options.phoneNumberId },
                contacts: [{ wa_id: '16505551234' }],
                messages: [{ from: '16505551234', id: 'wamid.A', timestamp: String(T0 / 1000), type: 'text', text: { body: 'hi' } }],
              },
            },
          ],
        },
      ],
    });
  });

  it('webhooks can be sent through the HTTP control API too', async () => {
    const response = await fetch(`${fake.url}/_fake/webhooks/messenger-read`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ webhookUrl: receiver.url, psid: 'P1', watermark: T0 }),
    });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ status: 200 });
    expect(JSON.parse(seen[0]!.raw.toString()).entry[0].messaging[0]).toMatchObject({ sender: { id: 'P1' }, read: { watermark: T0 } });
  });

  it('performs the GET verification handshake with hub.* parameters', async () => {
    const result = await fake.sendVerification({ webhookUrl: receiver.url + '/hook', verifyToken: 'tok', challenge: 'abc' });
    expect(result).toEqual({ status: 200, body: 'abc', challenge: 'abc' });
    expect(Object.fromEntries(seen[0]!.query)).toEqual({ 'hub.mode': 'subscribe', 'hub.verify_token': 'tok', 'hub.challenge': 'abc' });
  });
});
