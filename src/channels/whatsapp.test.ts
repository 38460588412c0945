import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ProviderError } from '../errors.ts';
import type { ChannelEvent, OutboundMessage } from '../core/types.ts';
import { startFakeMeta, startWebhookReceiver, type FakeMeta, type WebhookReceiver } from '../test/fake-meta.ts';
import { signMetaPayload } from './meta-signature.ts';
import { createWhatsApp, mapWhatsAppStatus, toE164, type WhatsAppAdapter, type WhatsAppConfig } from './whatsapp.ts';

const HOUR = 3_600_000;

async function sendError(promise: Promise<unknown>): Promise<ProviderError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(ProviderError);
    return error as ProviderError;
  }
  throw new Error('expected the send to fail');
}

describe('WhatsApp vocabulary', () => {
  it('maps statuses with one switch; unknown ones are ignored', () => {
    expect(['sent', 'delivered', 'read', 'failed', 'deleted', 'warning'].map(mapWhatsAppStatus)).toEqual(['sent', 'delivered', 'read', 'failed', undefined, undefined]);
  });
  it('wa_id digits become E.164', () => {
    expect(toE164('16505551234')).toBe('+16505551234');
    expect(toE164('+447700900123')).toBe('+447700900123');
  });
});

describe('WhatsApp adapter against the loopback fake', () => {
  let fake: FakeMeta;
  let receiver: WebhookReceiver;
  let adapter: WhatsAppAdapter;
  let clockMs: number;
  let deliveries: ChannelEvent[][];
  const VERIFY_TOKEN = 'whatsapp-verify-token';
  const PATIENT = '+16505551234';

  const configFor = (overrides: Partial<WhatsAppConfig> = {}): WhatsAppConfig => ({
    appSecret: fake.options.appSecret,
    verifyToken: VERIFY_TOKEN,
    accessToken: fake.options.whatsappAccessToken,
    phoneNumberId: fake.options.phoneNumberId,
    graphApiBase: fake.url,
    graphApiVersion: 'v21.0',
    timeoutMs: 2_000,
    now: () => new Date(clockMs),
    ...overrides,
  });
  const webhookUrl = () => `${receiver.url}/webhooks/whatsapp`;
  const reply = (body: string, lastInboundAt: Date | null): OutboundMessage => ({ channel: 'whatsapp', to: PATIENT, body, media: [], lastInboundAt });
  const send = (message: OutboundMessage, target: WhatsAppAdapter = adapter) => target.send(message, { outboxId: 'o1', signal: new AbortController().signal });

  beforeEach(async () => {
    fake = await startFakeMeta({ templates: ['care_team_reply_waiting'] });
    clockMs = Date.parse('2026-03-01T12:00:00Z');
    fake.setClock(clockMs);
    adapter = createWhatsApp(configFor());
    deliveries = [];
    receiver = await startWebhookReceiver(({ method, url, request }) => {
      if (method === 'GET') {
        const challenge = adapter.verifySubscription(url.searchParams);
        if (challenge === null) throw Object.assign(new Error('verify token mismatch'), { status: 403, code: 'forbidden' });
        return challenge;
      }
      const events = adapter.parseWebhook(request);
      deliveries.push(events);
      return { events: events.length };
    });
  });

  afterEach(async () => {
    await receiver.close();
    await fake.close();
  });

  describe('webhooks', () => {
    it('an inbound text verifies and arrives with an E.164 sender and the provider time', async () => {
      const result = await fake.sendWhatsAppText({ webhookUrl: webhookUrl(), from: '16505551234', text: 'Is the clinic open Saturday?', timestamp: clockMs - 4_000 });
      expect(result.status).toBe(200);
      expect(deliveries[0]).toEqual([
        {
          kind: 'inbound',
          channel: 'whatsapp',
          provider: 'meta',
          providerMessageId: result.id,
          from: PATIENT,
          to: '+' + fake.options.displayPhoneNumber,
          body: 'Is the clinic open Saturday?',
          media: [],
          receivedAt: new Date(Math.floor((clockMs - 4_000) / 1000) * 1000),
        },
      ]);
    });

    it('a redelivery carries the same wamid', async () => {
      const first = await fake.sendWhatsAppText({ webhookUrl: webhookUrl(), from: '16505551234', text: 'hi', id: 'wamid.SAME' });
      const again = await fake.sendWhatsAppText({ webhookUrl: webhookUrl(), from: '16505551234', text: 'hi', id: 'wamid.SAME' });
      expect([first.status, again.status]).toEqual([200, 200]);
      expect(deliveries.map((events) => events.map((e) => e.providerMessageId))).toEqual([['wamid.SAME'], ['wamid.SAME']]);
    });

    it('media become a whatsapp-media:<id> placeholder with its MIME type and caption', async () => {
      await fake.sendWhatsAppBatch({
        webhookUrl: webhookUrl(),
        entries: [[{ type: 'media', from: '16505551234', mediaType: 'image', mediaId: '1234567890', mimeType: 'image/jpeg', caption: 'my rash', id: 'wamid.IMG' }]],
      });
      expect(deliveries[0]).toEqual([
        expect.objectContaining({ kind: 'inbound', providerMessageId: 'wamid.IMG', body: 'my rash', media: [{ url: 'whatsapp-media:1234567890', contentType: 'image/jpeg' }] }),
      ]);
    });

    it('statuses map to our vocabulary; failed keeps errors[0].code; unknown statuses are skipped', async () => {
      for (const status of ['sent', 'delivered', 'read', 'deleted']) await fake.sendWhatsAppStatus({ webhookUrl: webhookUrl(), id: 'wamid.OUT', status });
      await fake.sendWhatsAppStatus({ webhookUrl: webhookUrl(), id: 'wamid.OUT2', status: 'failed', errorCode: 131047, errorTitle: 'Re-engagement message' });
      expect(deliveries.map((events) => events.map((e) => (e.kind === 'status' ? e.status : e.kind)))).toEqual([['sent'], ['delivered'], ['read'], [], ['failed']]);
      expect(deliveries[4]![0]).toEqual({
        kind: 'status',
        channel: 'whatsapp',
        provider: 'meta',
        providerMessageId: 'wamid.OUT2',
        status: 'failed',
        errorCode: '131047',
        errorMessage: 'Re-engagement message',
      });
    });

    it('batched entries with messages and statuses come out in order', async () => {
      const result = await fake.sendWhatsAppBatch({
        webhookUrl: webhookUrl(),
        entries: [
          [
            { type: 'text', from: '16505551234', text: 'one', id: 'wamid.1' },
            { type: 'text', from: '447700900123', text: 'two', id: 'wamid.2' },
            { type: 'status', id: 'wamid.OUT', status: 'delivered' },
          ],
          [{ type: 'status', id: 'wamid.OUT', status: 'read' }, { type: 'text', from: '16505551234', text: 'three', id: 'wamid.3' }],
        ],
      });
      expect(result.status).toBe(200);
      expect(deliveries[0]!.map((e) => [e.kind, e.providerMessageId])).toEqual([
        ['inbound', 'wamid.1'],
        ['inbound', 'wamid.2'],
        ['status', 'wamid.OUT'],
        ['inbound', 'wamid.3'],
        ['status', 'wamid.OUT'],
      ]);
      expect(deliveries[0]![1]).toMatchObject({ from: '+447700900123' });
    });

    it("other fields, another number's events and message kinds we do not store are ignored", async () => {
      const otherNumber = { display_phone_number: '15550000000', phone_number_id: '999999999' };
      const result = await fake.sendWhatsAppBatch({
        webhookUrl: webhookUrl(),
        entries: [
          [
            { type: 'raw-change', change: { field: 'account_update', value: { phone_number: '15550783881', event: 'VERIFIED_ACCOUNT' } } },
            { type: 'raw-change', change: { field: 'messages', value: { messaging_product: 'whatsapp', metadata: otherNumber, messages: [{ from: '16505551234', id: 'wamid.X', timestamp: '1', type: 'text', text: { body: 'not ours' } }] } } },
            {
              type: 'raw-change',
              change: {
                field: 'messages',
                value: {
                  messaging_product: 'whatsapp',
                  metadata: { display_phone_number: fake.options.displayPhoneNumber, phone_number_id: fake.options.phoneNumberId },
                  messages: [{ from: '16505551234', id: 'wamid.R', timestamp: '1', type: 'reaction', reaction: { message_id: 'wamid.OUT', emoji: '👍' } }],
                },
              },
            },
          ],
        ],
      });
      expect(result.status).toBe(200);
      expect(deliveries).toEqual([[]]);
    });

    it('unsigned, mis-signed and malformed webhooks are refused with 4xx; a signed webhook for another product is ignored', async () => {
      const body = JSON.stringify({ object: 'whatsapp_business_account', entry: [] });
      const unsigned = await fake.postWebhook({ webhookUrl: webhookUrl(), body, signature: null });
      expect([unsigned.status, JSON.parse(unsigned.body).code]).toEqual([403, 'signature_missing']);
      const wrong = await fake.postWebhook({ webhookUrl: webhookUrl(), body, signature: signMetaPayload('not-the-app-secret', body) });
      expect([wrong.status, JSON.parse(wrong.body).code]).toEqual([403, 'signature_invalid']);
      const noMetadata = JSON.stringify({ object: 'whatsapp_business_account', entry: [{ id: '1', changes: [{ field: 'messages', value: { messages: [] } }] }] });
      const malformed = await fake.postWebhook({ webhookUrl: webhookUrl(), body: noMetadata });
      expect([malformed.status, JSON.parse(malformed.body).code]).toEqual([400, 'invalid_webhook']);
      expect(deliveries).toEqual([]);
      const page = await fake.postWebhook({ webhookUrl: webhookUrl(), body: JSON.stringify({ object: 'page', entry: [] }) });
      expect(page.status).toBe(200);
      expect(deliveries).toEqual([[]]);
    });

    it('answers the GET verification handshake', async () => {
      expect(await fake.sendVerification({ webhookUrl: webhookUrl(), verifyToken: VERIFY_TOKEN, challenge: 'ch4ll3nge' })).toMatchObject({ status: 200, body: 'ch4ll3nge' });
      expect((await fake.sendVerification({ webhookUrl: webhookUrl(), verifyToken: 'guess' })).status).toBe(403);
    });
  });

  describe('send', () => {
    it('inside 24 h sends text and returns messages[0].id', async () => {
      const inbound = await fake.sendWhatsAppText({ webhookUrl: webhookUrl(), from: '16505551234', text: 'hello' });
      clockMs += 5 * HOUR;
      fake.setClock(clockMs);
      const { providerMessageId } = await send(reply('Yes, 9am to noon.', new Date(inbound.timestamp)));
      expect(providerMessageId).toBe(fake.received[0]!.id);
      expect(providerMessageId).toMatch(/^wamid\./);
      expect(fake.received[0]!.json).toEqual({ messaging_product: 'whatsapp', recipient_type: 'individual', to: PATIENT, type: 'text', text: { preview_url: false, body: 'Yes, 9am to noon.' } });
    });

    it('outside 24 h sends the configured template instead', async () => {
      const lastInboundAt = new Date(clockMs - 2 * 24 * HOUR);
      fake.setLastInbound('whatsapp', PATIENT, lastInboundAt);
      const withTemplate = createWhatsApp(configFor({ whatsappTemplate: { name: 'care_team_reply_waiting', languageCode: 'en_US' } }));
      const { providerMessageId } = await send(reply('Your results are in.', lastInboundAt), withTemplate);
      expect(providerMessageId).toBe(fake.received[0]!.id);
      expect(fake.received[0]!.json).toEqual({
        messaging_product: 'whatsapp',
        recipient_type: 'individual',
        to: PATIENT,
        type: 'template',
        template: { name: 'care_team_reply_waiting', language: { code: 'en_US' } },
      });
    });

    it('outside 24 h without a template refuses with outside_window without calling Meta', async () => {
      for (const lastInboundAt of [new Date(clockMs - 25 * HOUR), null]) {
        const error = await sendError(send(reply('too late', lastInboundAt)));
        expect(error.details).toMatchObject({ retryable: false, outcome: 'not-sent', code: 'outside_window' });
      }
      expect(fake.requests).toEqual([]);
    });

    it("when Meta's clock says the window closed, error 131047 is outside_window too", async () => {
      fake.setLastInbound('whatsapp', PATIENT, clockMs - 25 * HOUR);
      const error = await sendError(send(reply('borderline', new Date(clockMs - 23 * HOUR))));
      expect(error.details).toMatchObject({ retryable: false, outcome: 'not-sent', code: 'outside_window', httpStatus: 400 });
      expect(error.message).toContain('131047');
      expect(fake.received).toEqual([]);
    });

    it('an unapproved template is a permanent error with its Graph code', async () => {
      const withTemplate = createWhatsApp(configFor({ whatsappTemplate: { name: 'never_approved', languageCode: 'en_US' } }));
      const error = await sendError(send(reply('x', null), withTemplate));
      expect(error.details).toEqual({ retryable: false, outcome: 'not-sent', code: '132001', httpStatus: 404 });
    });

    describe('error classification', () => {
      const lastInboundAt = () => new Date(clockMs - HOUR);
      beforeEach(() => fake.setLastInbound('whatsapp', PATIENT, clockMs - HOUR));

      it('429 (code 130429) is retryable and not sent', async () => {
        fake.injectFault({ kind: 'status', status: 429 });
        const error = await sendError(send(reply('a', lastInboundAt())));
        expect(error.details).toEqual({ retryable: true, outcome: 'not-sent', code: '130429', httpStatus: 429, retryAfterMs: 1_000 });
      });

      it('5xx and timeouts are retryable with an unknown outcome', async () => {
        fake.injectFault({ kind: 'status', status: 500 });
        expect((await sendError(send(reply('a', lastInboundAt())))).details).toMatchObject({ retryable: true, outcome: 'unknown', httpStatus: 500 });
        fake.injectFault({ kind: 'timeout' });
        const quick = createWhatsApp(configFor({ timeoutMs: 150 }));
        expect((await sendError(send(reply('a', lastInboundAt()), quick))).details).toMatchObject({ retryable: true, outcome: 'unknown', code: 'timeout' });
      });

      it('a dropped connection after acceptance is unknown; findSent has nothing to offer', async () => {
        fake.injectFault({ kind: 'drop-after-accept' });
        const message = reply('maybe', lastInboundAt());
        expect((await sendError(send(message))).details).toMatchObject({ retryable: true, outcome: 'unknown' });
        expect(fake.received).toHaveLength(1);
        expect(await adapter.findSent(message, { since: new Date(clockMs - 60_000), signal: new AbortController().signal })).toEqual([]);
        expect(adapter.lookup).toBe('none');
      });

      it('other 4xx are permanent with the Graph code; a bad token is retryable', async () => {
        fake.injectFault({ kind: 'graph-error', status: 400, code: 131009, message: '(#131009) Parameter value is not valid' });
        expect((await sendError(send(reply('a', lastInboundAt())))).details).toEqual({ retryable: false, outcome: 'not-sent', code: '131009', httpStatus: 400 });
        const wrongToken = createWhatsApp(configFor({ accessToken: 'EAAexpired' }));
        expect((await sendError(send(reply('a', lastInboundAt()), wrongToken))).details).toMatchObject({ retryable: true, outcome: 'not-sent', code: '190' });
        expect(fake.received).toEqual([]);
      });
    });
  });
});
