import { createHmac } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AppError, ProviderError } from '../errors.ts';
import type { ChannelEvent, OutboundMessage } from '../core/types.ts';
import { startFakeMeta, startWebhookReceiver, type FakeMeta, type WebhookReceiver } from '../test/fake-meta.ts';
import type { WebhookRequest } from './channel.ts';
import { chooseMessagingType, createMessenger, type MessengerAdapter, type MessengerConfig, type MessengerWatermark } from './meta-messenger.ts';
import { signMetaPayload, verifyMetaSignature, verifySubscription } from './meta-signature.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** The error a call throws, for asserting on its fields. */
function caught(run: () => unknown): unknown {
  try {
    run();
  } catch (error) {
    return error;
  }
  throw new Error('expected a throw');
}

async function sendError(promise: Promise<unknown>): Promise<ProviderError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(ProviderError);
    return error as ProviderError;
  }
  throw new Error('expected the send to fail');
}

async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

const signed = (secret: string, body: string, headerName = 'x-hub-signature-256'): WebhookRequest => ({
  publicUrl: 'https://switchboard.example/webhooks/messenger',
  headers: { [headerName]: signMetaPayload(secret, body) },
  rawBody: Buffer.from(body, 'utf8'),
});

describe('X-Hub-Signature-256 (providers.md §6 vectors)', () => {
  const V1_BODY =
    '{"object":"page","entry":[{"id":"PAGE_ID","time":1458692752478,"messaging":[{"sender":{"id":"PSID_1"},"recipient":{"id":"PAGE_ID"},"timestamp":1458692752478,"message":{"mid":"mid.1457764197618:41d102a3e1ae206a38","text":"hello, world!"}}]}]}';
  const V1_SIGNATURE = 'sha256=0ecd07360845b877fadeaba351e7ef3bb237e6dd2dc0937ad04f967cedf02d13';
  const vectorAdapter = (appSecret: string) =>
    createMessenger({ appSecret, verifyToken: 'v', pageAccessToken: 't', pageId: 'PAGE_ID', timeoutMs: 1_000 });

  it('signs the Messenger text vector and parses it into one inbound message', () => {
    expect(signMetaPayload('test_app_secret', V1_BODY)).toBe(V1_SIGNATURE);
    const events = vectorAdapter('test_app_secret').parseWebhook({ publicUrl: 'x', headers: { 'x-hub-signature-256': V1_SIGNATURE }, rawBody: Buffer.from(V1_BODY) });
    expect(events).toEqual([
      {
        kind: 'inbound',
        channel: 'messenger',
        provider: 'meta',
        providerMessageId: 'mid.1457764197618:41d102a3e1ae206a38',
        from: 'PSID_1',
        to: 'PAGE_ID',
        body: 'hello, world!',
        media: [],
        receivedAt: new Date(1458692752478),
      },
    ]);
  });

  it('pretty-printing the same JSON breaks the signature', () => {
    const pretty = JSON.stringify(JSON.parse(V1_BODY), null, 2);
    const error = caught(() => vectorAdapter('test_app_secret').parseWebhook({ publicUrl: 'x', headers: { 'x-hub-signature-256': V1_SIGNATURE }, rawBody: Buffer.from(pretty) }));
    expect(error).toMatchObject({ status: 403, code: 'signature_invalid' });
  });

  it('verifies the fbsamples vector; an entry without messaging is ignored', () => {
    const body = '{"object": "page", "entry": [{"changes": [{"field": "feed", "value": {"post_id": "123_456"}}]}]}';
    expect(signMetaPayload('test_app_secret_key', body)).toBe('sha256=be7908fe36aaf42396fb1374a488aa656b1e81ff5679ebf5985ee1b77eaea579');
    expect(vectorAdapter('test_app_secret_key').parseWebhook(signed('test_app_secret_key', body))).toEqual([]);
  });

  it('verifies the escaped-unicode bytes as sent; decoding and re-encoding them does not verify', () => {
    const raw = '{"text":"\\u00e4\\u00f6\\u00e5"}';
    const signature = 'sha256=02331cadf5416e9e5dc4ecf73b5c9b7aa6577a90b90fbb6bad6e9a35d8a8f6a9';
    expect(signMetaPayload('test_app_secret', raw)).toBe(signature);
    expect(() => verifyMetaSignature({ publicUrl: 'x', headers: { 'x-hub-signature-256': signature }, rawBody: Buffer.from(raw) }, 'test_app_secret')).not.toThrow();
    const reencoded = JSON.stringify(JSON.parse(raw));
    expect(reencoded).toBe('{"text":"äöå"}');
    expect(signMetaPayload('test_app_secret', reencoded)).toMatch(/^sha256=1156bb88/);
    const error = caught(() => verifyMetaSignature({ publicUrl: 'x', headers: { 'x-hub-signature-256': signature }, rawBody: Buffer.from(reencoded, 'utf8') }, 'test_app_secret'));
    expect(error).toMatchObject({ status: 403, code: 'signature_invalid' });
  });

  it('refuses missing, legacy-only, malformed and wrong-key signatures before parsing', () => {
    const adapter = vectorAdapter('test_app_secret');
    const body = Buffer.from(V1_BODY);
    const attempt = (headers: WebhookRequest['headers']) => caught(() => adapter.parseWebhook({ publicUrl: 'x', headers, rawBody: body }));
    expect(attempt({})).toMatchObject({ status: 403, code: 'signature_missing' });
    const sha1 = 'sha1=' + createHmac('sha1', 'test_app_secret').update(body).digest('hex');
    expect(attempt({ 'x-hub-signature': sha1 })).toMatchObject({ status: 403, code: 'signature_missing' });
    expect(attempt({ 'x-hub-signature-256': 'sha256=zz' })).toMatchObject({ status: 403, code: 'signature_invalid' });
    expect(attempt({ 'x-hub-signature-256': V1_SIGNATURE.slice(0, -2) })).toMatchObject({ status: 403, code: 'signature_invalid' });
    expect(attempt({ 'x-hub-signature-256': signMetaPayload('another_secret', body) })).toMatchObject({ status: 403, code: 'signature_invalid' });
    // Header names are case-insensitive; a framework that keeps the original case still verifies.
    expect(adapter.parseWebhook({ publicUrl: 'x', headers: { 'X-Hub-Signature-256': V1_SIGNATURE }, rawBody: body })).toHaveLength(1);
  });

  it('a signed body that is not JSON, or not the webhook shape, is a 400', () => {
    const adapter = vectorAdapter('test_app_secret');
    for (const body of ['{"object":"page",', '{"object":"page"}', '{"object":"page","entry":[{"id":"PAGE_ID","messaging":[{"sender":{"id":"PSID_1"},"recipient":{"id":"PAGE_ID"},"timestamp":1,"message":{"text":"no mid"}}]}]}']) {
      const error = caught(() => adapter.parseWebhook(signed('test_app_secret', body)));
      expect(error).toBeInstanceOf(AppError);
      expect(error).toMatchObject({ status: 400, code: 'invalid_webhook' });
    }
  });

  it('a signed webhook for another product is acknowledged and ignored', () => {
    expect(vectorAdapter('test_app_secret').parseWebhook(signed('test_app_secret', '{"object":"instagram","entry":[]}'))).toEqual([]);
  });
});

describe('GET subscription handshake', () => {
  it('answers the challenge only for subscribe with the right token', () => {
    const query = (params: Record<string, string>) => new URLSearchParams(params);
    expect(verifySubscription(query({ 'hub.mode': 'subscribe', 'hub.verify_token': 'tok', 'hub.challenge': '1158201444' }), 'tok')).toBe('1158201444');
    expect(verifySubscription(query({ 'hub.mode': 'subscribe', 'hub.verify_token': 'nope', 'hub.challenge': '1' }), 'tok')).toBeNull();
    expect(verifySubscription(query({ 'hub.mode': 'unsubscribe', 'hub.verify_token': 'tok', 'hub.challenge': '1' }), 'tok')).toBeNull();
    expect(verifySubscription(query({ 'hub.mode': 'subscribe', 'hub.verify_token': 'tok' }), 'tok')).toBeNull();
    // A framework's parsed query: plain keys with dots; repeated parameters are ambiguous and refused.
    expect(verifySubscription({ 'hub.mode': 'subscribe', 'hub.verify_token': 'tok', 'hub.challenge': 'abc' }, 'tok')).toBe('abc');
    expect(verifySubscription({ 'hub.mode': 'subscribe', 'hub.verify_token': ['tok', 'x'], 'hub.challenge': 'abc' }, 'tok')).toBeNull();
    expect(verifySubscription({ 'hub.mode': 'subscribe', 'hub.verify_token': '', 'hub.challenge': 'abc' }, '')).toBeNull();
  });
});

describe('Messenger windows', () => {
  const now = new Date('2026-03-01T12:00:00Z');
  const ago = (ms: number) => new Date(now.getTime() - ms);
  it('RESPONSE inside 24 h, HUMAN_AGENT up to 7 days, nothing after or without a message', () => {
    expect(chooseMessagingType(ago(23 * HOUR), now)).toEqual({ messaging_type: 'RESPONSE' });
    expect(chooseMessagingType(ago(-5_000), now)).toEqual({ messaging_type: 'RESPONSE' });
    expect(chooseMessagingType(ago(DAY), now)).toEqual({ messaging_type: 'MESSAGE_TAG', tag: 'HUMAN_AGENT' });
    expect(chooseMessagingType(ago(7 * DAY - 1), now)).toEqual({ messaging_type: 'MESSAGE_TAG', tag: 'HUMAN_AGENT' });
    expect(chooseMessagingType(ago(7 * DAY), now)).toBeNull();
    expect(chooseMessagingType(null, now)).toBeNull();
    expect(chooseMessagingType(undefined, now)).toBeNull();
  });
});

describe('Messenger adapter against the loopback fake', () => {
  let fake: FakeMeta;
  let receiver: WebhookReceiver;
  let adapter: MessengerAdapter;
  let clockMs: number;
  let deliveries: { events: ChannelEvent[]; watermarks: MessengerWatermark[] }[];
  const VERIFY_TOKEN = 'messenger-verify-token';
  const PSID = '24680135792468013';

  const configFor = (overrides: Partial<MessengerConfig> = {}): MessengerConfig => ({
    appSecret: fake.options.appSecret,
    verifyToken: VERIFY_TOKEN,
    pageAccessToken: fake.options.pageAccessToken,
    pageId: fake.options.pageId,
    graphApiBase: fake.url,
    timeoutMs: 2_000,
    now: () => new Date(clockMs),
    ...overrides,
  });
  const webhookUrl = () => `${receiver.url}/webhooks/messenger`;
  const reply = (body: string, lastInboundAt: Date | null): OutboundMessage => ({ channel: 'messenger', to: PSID, body, media: [], lastInboundAt });
  const send = (message: OutboundMessage, target: MessengerAdapter = adapter) => target.send(message, { outboxId: 'o1', signal: new AbortController().signal });

  beforeEach(async () => {
    fake = await startFakeMeta();
    clockMs = Date.parse('2026-03-01T12:00:00Z');
    fake.setClock(clockMs);
    adapter = createMessenger(configFor());
    deliveries = [];
    receiver = await startWebhookReceiver(({ method, url, request }) => {
      if (method === 'GET') {
        const challenge = adapter.verifySubscription(url.searchParams);
        if (challenge === null) throw Object.assign(new Error('verify token mismatch'), { status: 403, code: 'forbidden' });
        return challenge;
      }
      const delivery = { events: adapter.parseWebhook(request), watermarks: adapter.parseWatermarks(request) };
      deliveries.push(delivery);
      return { events: delivery.events.length };
    });
  });

  afterEach(async () => {
    await receiver.close();
    await fake.close();
  });

  describe('webhooks', () => {
    it('a text the fake signs verifies and becomes an inbound message stamped with the provider time', async () => {
      const result = await fake.sendMessengerText({ webhookUrl: webhookUrl(), psid: PSID, text: 'Can I move my appointment?', timestamp: clockMs - 1_500 });
      expect(result.status).toBe(200);
      expect(deliveries[0]!.events).toEqual([
        {
          kind: 'inbound',
          channel: 'messenger',
          provider: 'meta',
          providerMessageId: result.mid,
          from: PSID,
          to: fake.options.pageId,
          body: 'Can I move my appointment?',
          media: [],
          receivedAt: new Date(clockMs - 1_500),
        },
      ]);
    });

    it('non-ASCII text arrives escaped on the wire and decoded in the event', async () => {
      const text = 'Grüße aus Zürich 👋 — 1/2 dose?';
      const result = await fake.sendMessengerText({ webhookUrl: webhookUrl(), psid: PSID, text });
      expect(result.status).toBe(200);
      expect(result.rawBody).toContain('Gr\\u00fc\\u00dfe');
      expect(result.rawBody).toContain('\\ud83d\\udc4b');
      expect(result.rawBody).toContain('1\\/2');
      expect(deliveries[0]!.events[0]).toMatchObject({ kind: 'inbound', body: text });
    });

    it('a redelivery carries the same providerMessageId (the storage layer dedupes on it)', async () => {
      const first = await fake.sendMessengerText({ webhookUrl: webhookUrl(), psid: PSID, text: 'hello', mid: 'm_same', timestamp: clockMs });
      const again = await fake.sendMessengerText({ webhookUrl: webhookUrl(), psid: PSID, text: 'hello', mid: 'm_same', timestamp: clockMs });
      expect([first.status, again.status]).toEqual([200, 200]);
      expect(deliveries.map((d) => d.events.map((e) => e.providerMessageId))).toEqual([['m_same'], ['m_same']]);
    });

    it('echoes of our own sends are ignored', async () => {
      const result = await fake.sendMessengerEcho({ webhookUrl: webhookUrl(), psid: PSID, text: 'our reply' });
      expect(result.status).toBe(200);
      expect(deliveries[0]).toEqual({ events: [], watermarks: [] });
    });

    it('batched entries and several messaging events come out in order', async () => {
      const result = await fake.sendMessengerBatch({
        webhookUrl: webhookUrl(),
        entries: [
          [
            { type: 'text', psid: PSID, text: 'one', mid: 'm_1', timestamp: clockMs - 3_000 },
            { type: 'echo', psid: PSID, text: 'echo', mid: 'm_echo' },
            { type: 'text', psid: 'PSID_OTHER', text: 'two', mid: 'm_2', timestamp: clockMs - 2_000 },
          ],
          [
            { type: 'delivery', psid: PSID, mids: ['m_out_1'], watermark: clockMs - 1_000 },
            { type: 'text', psid: PSID, text: 'three', mid: 'm_3', timestamp: clockMs },
          ],
        ],
      });
      expect(result.status).toBe(200);
      const [delivery] = deliveries;
      expect(delivery!.events.map((e) => [e.kind, e.providerMessageId])).toEqual([
        ['inbound', 'm_1'],
        ['inbound', 'm_2'],
        ['status', 'm_out_1'],
        ['inbound', 'm_3'],
      ]);
      expect(delivery!.events[1]).toMatchObject({ from: 'PSID_OTHER', body: 'two' });
      expect(delivery!.watermarks).toEqual([{ psid: PSID, status: 'delivered', watermark: new Date(clockMs - 1_000) }]);
    });

    it('attachments become media', async () => {
      await fake.sendMessengerBatch({
        webhookUrl: webhookUrl(),
        entries: [[{ type: 'text', psid: PSID, text: '', mid: 'm_img', attachments: [{ type: 'image', url: 'https://cdn.example/scontent/photo.jpg' }, { type: 'file', url: 'https://cdn.example/f.pdf' }] }]],
      });
      expect(deliveries[0]!.events[0]).toMatchObject({
        kind: 'inbound',
        body: '',
        media: [{ url: 'https://cdn.example/scontent/photo.jpg', contentType: 'image/*' }, { url: 'https://cdn.example/f.pdf' }],
      });
    });

    it('delivery with mids maps to delivered per mid plus a watermark; without mids and read receipts give watermarks only', async () => {
      await fake.sendMessengerDelivery({ webhookUrl: webhookUrl(), psid: PSID, mids: ['m_a', 'm_b'], watermark: clockMs - 10 });
      await fake.sendMessengerDelivery({ webhookUrl: webhookUrl(), psid: PSID, watermark: clockMs - 5 });
      await fake.sendMessengerRead({ webhookUrl: webhookUrl(), psid: PSID, watermark: clockMs });
      expect(deliveries[0]!.events).toEqual([
        { kind: 'status', channel: 'messenger', provider: 'meta', providerMessageId: 'm_a', status: 'delivered' },
        { kind: 'status', channel: 'messenger', provider: 'meta', providerMessageId: 'm_b', status: 'delivered' },
      ]);
      expect(deliveries.map((d) => d.watermarks)).toEqual([
        [{ psid: PSID, status: 'delivered', watermark: new Date(clockMs - 10) }],
        [{ psid: PSID, status: 'delivered', watermark: new Date(clockMs - 5) }],
        [{ psid: PSID, status: 'read', watermark: new Date(clockMs) }],
      ]);
      expect(deliveries[1]!.events).toEqual([]);
      expect(deliveries[2]!.events).toEqual([]);
    });

    it("another page's entries and event kinds we never offer are ignored", async () => {
      const body = JSON.stringify({
        object: 'page',
        entry: [
          { id: 'SOME_OTHER_PAGE', time: clockMs, messaging: [{ sender: { id: PSID }, recipient: { id: 'SOME_OTHER_PAGE' }, timestamp: clockMs, message: { mid: 'm_x', text: 'not ours' } }] },
          { id: fake.options.pageId, time: clockMs, messaging: [{ sender: { id: PSID }, recipient: { id: fake.options.pageId }, timestamp: clockMs, postback: { title: 'Start', payload: 'GET_STARTED' } }] },
        ],
      });
      const result = await fake.postWebhook({ webhookUrl: webhookUrl(), body });
      expect(result.status).toBe(200);
      expect(deliveries[0]).toEqual({ events: [], watermarks: [] });
    });

    it('unsigned, mis-signed and malformed webhooks are refused with 4xx', async () => {
      const body = JSON.stringify({ object: 'page', entry: [] });
      const unsigned = await fake.postWebhook({ webhookUrl: webhookUrl(), body, signature: null });
      expect(unsigned.status).toBe(403);
      expect(JSON.parse(unsigned.body)).toMatchObject({ code: 'signature_missing' });
      const wrong = await fake.postWebhook({ webhookUrl: webhookUrl(), body, signature: 'sha256=' + '0'.repeat(64) });
      expect(wrong.status).toBe(403);
      expect(JSON.parse(wrong.body)).toMatchObject({ code: 'signature_invalid' });
      const malformed = await fake.postWebhook({ webhookUrl: webhookUrl(), body: '{"object":"page","entry":{' });
      expect(malformed.status).toBe(400);
      expect(JSON.parse(malformed.body)).toMatchObject({ code: 'invalid_webhook' });
      expect(deliveries).toEqual([]);
    });

    it('answers the fake\'s GET verification with the challenge, and 403 for a wrong token', async () => {
      const ok = await fake.sendVerification({ webhookUrl: webhookUrl(), verifyToken: VERIFY_TOKEN, challenge: '1158201444' });
      expect(ok).toMatchObject({ status: 200, body: '1158201444' });
      expect((await fake.sendVerification({ webhookUrl: webhookUrl(), verifyToken: 'guess' })).status).toBe(403);
      expect((await fake.sendVerification({ webhookUrl: webhookUrl(), verifyToken: VERIFY_TOKEN, mode: 'unsubscribe' })).status).toBe(403);
    });
  });

  describe('send', () => {
    it('inside 24 h sends RESPONSE text and returns the message_id', async () => {
      const lastInboundAt = new Date(clockMs - 2 * HOUR);
      fake.setLastInbound('messenger', PSID, lastInboundAt);
      const { providerMessageId } = await send(reply('Yes, Thursday at 10 works.', lastInboundAt));
      expect(fake.received).toHaveLength(1);
      expect(providerMessageId).toBe(fake.received[0]!.id);
      expect(fake.received[0]!.json).toEqual({ recipient: { id: PSID }, messaging_type: 'RESPONSE', message: { text: 'Yes, Thursday at 10 works.' } });
    });

    it('a message the fake learnt from its own webhook can be answered', async () => {
      const inbound = await fake.sendMessengerText({ webhookUrl: webhookUrl(), psid: PSID, text: 'hi' });
      const event = deliveries[0]!.events[0]!;
      expect(event.kind).toBe('inbound');
      clockMs += 30 * 60_000;
      fake.setClock(clockMs);
      await send(reply('hello!', new Date(inbound.timestamp)));
      expect(fake.received[0]!.json.messaging_type).toBe('RESPONSE');
    });

    it('between 24 h and 7 days sends MESSAGE_TAG + HUMAN_AGENT', async () => {
      const lastInboundAt = new Date(clockMs - 3 * DAY);
      fake.setLastInbound('messenger', PSID, lastInboundAt);
      await send(reply('Following up on your question.', lastInboundAt));
      expect(fake.received[0]!.json).toEqual({ recipient: { id: PSID }, messaging_type: 'MESSAGE_TAG', tag: 'HUMAN_AGENT', message: { text: 'Following up on your question.' } });
    });

    it('after 7 days, or with no inbound message, refuses with outside_window without calling Meta', async () => {
      for (const lastInboundAt of [new Date(clockMs - 8 * DAY), null]) {
        const error = await sendError(send(reply('too late', lastInboundAt)));
        expect(error.details).toMatchObject({ retryable: false, outcome: 'not-sent', code: 'outside_window' });
      }
      expect(fake.requests).toEqual([]);
    });

    it("when Meta's clock says the window closed, the Graph error 10/2018278 is outside_window too", async () => {
      // Our record says 23 h ago; Meta saw the message 25 h ago (simulated clocks disagree at the boundary).
      fake.setLastInbound('messenger', PSID, clockMs - 25 * HOUR);
      const error = await sendError(send(reply('just in time?', new Date(clockMs - 23 * HOUR))));
      expect(error.details).toMatchObject({ retryable: false, outcome: 'not-sent', code: 'outside_window', httpStatus: 400 });
      expect(error.message).toContain('10/2018278');
      expect(fake.requests).toHaveLength(1);
      expect(fake.received).toEqual([]);
    });

    it('media are refused before calling Meta', async () => {
      const error = await sendError(send({ ...reply('see attached', new Date(clockMs)), media: [{ url: 'https://x.example/a.png' }] }));
      expect(error.details).toMatchObject({ retryable: false, code: 'media_unsupported' });
      expect(fake.requests).toEqual([]);
    });

    describe('error classification', () => {
      const lastInboundAt = () => new Date(clockMs - HOUR);
      beforeEach(() => fake.setLastInbound('messenger', PSID, clockMs - HOUR));

      it('429 is retryable and not sent, with Retry-After', async () => {
        fake.injectFault({ kind: 'status', status: 429 });
        const error = await sendError(send(reply('a', lastInboundAt())));
        expect(error.details).toEqual({ retryable: true, outcome: 'not-sent', code: '613', httpStatus: 429, retryAfterMs: 1_000 });
        expect(fake.received).toEqual([]);
      });

      it('Graph rate-limit codes 4, 17, 32 and 613 on a 400 are retryable and not sent', async () => {
        for (const code of [4, 17, 32, 613]) {
          fake.injectFault({ kind: 'graph-error', status: 400, code, message: `(#${code}) rate limited` });
          const error = await sendError(send(reply('a', lastInboundAt())));
          expect(error.details).toMatchObject({ retryable: true, outcome: 'not-sent', code: String(code) });
        }
      });

      it('500 and 503 are retryable with an unknown outcome', async () => {
        for (const status of [500, 503] as const) {
          fake.injectFault({ kind: 'status', status });
          const error = await sendError(send(reply('a', lastInboundAt())));
          expect(error.details).toMatchObject({ retryable: true, outcome: 'unknown', httpStatus: status });
        }
      });

      it('a timeout is retryable with an unknown outcome', async () => {
        fake.injectFault({ kind: 'timeout' });
        const quick = createMessenger(configFor({ timeoutMs: 150 }));
        const error = await sendError(send(reply('a', lastInboundAt()), quick));
        expect(error.details).toMatchObject({ retryable: true, outcome: 'unknown', code: 'timeout' });
      });

      it("the caller's abort mid-request is retryable with an unknown outcome", async () => {
        fake.injectFault({ kind: 'timeout' });
        const controller = new AbortController();
        const pending = sendError(adapter.send(reply('a', lastInboundAt()), { outboxId: 'o1', signal: controller.signal }));
        await until(() => fake.requests.length === 1, 'the request to reach the fake');
        controller.abort();
        expect((await pending).details).toMatchObject({ retryable: true, outcome: 'unknown', code: 'aborted' });
      });

      it('a connection dropped after Meta accepted is unknown, and findSent cannot find it (lookup: none; the outbox holds it as uncertain)', async () => {
        fake.injectFault({ kind: 'drop-after-accept' });
        const message = reply('maybe sent', lastInboundAt());
        const error = await sendError(send(message));
        expect(error.details).toMatchObject({ retryable: true, outcome: 'unknown' });
        expect(fake.received).toHaveLength(1);
        expect(await adapter.findSent(message, { since: new Date(clockMs - 60_000), signal: new AbortController().signal })).toEqual([]);
        expect(adapter.lookup).toBe('none');
      });

      it('a connection dropped before acceptance is also unknown to us', async () => {
        fake.injectFault({ kind: 'drop-before-accept' });
        const error = await sendError(send(reply('a', lastInboundAt())));
        expect(error.details).toMatchObject({ retryable: true, outcome: 'unknown' });
        expect(fake.received).toEqual([]);
      });

      it('other 4xx are permanent and carry the Graph error code', async () => {
        fake.injectFault({ kind: 'graph-error', status: 400, code: 551, subcode: 1545041, message: "This person isn't available right now." });
        const unavailable = await sendError(send(reply('a', lastInboundAt())));
        expect(unavailable.details).toEqual({ retryable: false, outcome: 'not-sent', code: '551', httpStatus: 400, identity: 'unreachable' });
        expect(unavailable.message).toContain("551/1545041: This person isn't available right now.");
        fake.injectFault({ kind: 'graph-error', status: 400, code: 100, message: '(#100) Invalid parameter' });
        expect((await sendError(send(reply('a', lastInboundAt())))).details).toMatchObject({ retryable: false, code: '100' });
      });

      it('a rejected token (190) waits for an operator: retryable, not sent', async () => {
        const wrongToken = createMessenger(configFor({ pageAccessToken: 'EAAexpired' }));
        const error = await sendError(send(reply('a', lastInboundAt()), wrongToken));
        expect(error.details).toMatchObject({ retryable: true, outcome: 'not-sent', code: '190', httpStatus: 401 });
        expect(fake.received).toEqual([]);
      });

      it('a refused connection is retryable and not sent', async () => {
        await fake.close();
        const error = await sendError(send(reply('a', lastInboundAt())));
        expect(error.details).toMatchObject({ retryable: true, outcome: 'not-sent', code: 'ECONNREFUSED' });
        fake = await startFakeMeta();
      });
    });
  });
});
