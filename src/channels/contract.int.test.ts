import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChannelAdapter, WebhookRequest } from './channel.ts';
import type { Channel, ChannelEvent, DeliveryStatus, InboundMessage, MessageStatus, OutboundMessage } from '../core/types.ts';
import { AppError, ProviderError } from '../errors.ts';
import { createTwilioSms } from './twilio-sms.ts';
import { createMessenger } from './meta-messenger.ts';
import { createWhatsApp } from './whatsapp.ts';
import { startFakeTwilio } from '../test/fake-twilio.ts';
import { startFakeMeta, startWebhookReceiver, type FakeMeta } from '../test/fake-meta.ts';
import { backends } from '../test/databases.ts';
import { recordInbound } from '../db/patients.ts';
import { applyDeliveryStatus } from '../db/messages.ts';

/**
 * The adapter contract: every adapter, against its loopback fake, must behave the same way on the questions the
 * rest of the system depends on. Adding a provider = its adapter file + its fake + one entry in CONTRACT below
 * (docs/ARCHITECTURE.md §8). A driver hides only how the fake is told to do something; every assertion is about
 * what the adapter returned or threw for what crossed the wire.
 */

type Fault = '429' | '5xx' | 'permanent' | 'permanent-identity' | 'drop-after-accept';

interface ContractDriver {
  adapter: ChannelAdapter;
  /** A message the adapter may send right now (the recipient has written, inside any window). */
  outbound(text: string): OutboundMessage;
  /** One signed inbound webhook per message, as the provider sends it, captured at a loopback receiver. */
  inbound(args: { from: string; text: string; id: string; at: Date }): Promise<WebhookRequest>;
  /** Several inbound messages as the provider delivers them: in one request where it batches, else one each. */
  inboundBatch(items: Array<{ from: string; text: string; id: string; at: Date }>): Promise<WebhookRequest[]>;
  /** Signed status webhooks for a message the fake accepted, in the order given. */
  statuses(providerMessageId: string, statuses: string[]): Promise<WebhookRequest[]>;
  fault(kind: Fault): void;
  /** What the fake accepted, as it crossed the wire. */
  received(): Array<{ id: string; to: string; text: string }>;
  close(): Promise<void>;
}

interface ContractEntry {
  name: string;
  channel: Channel;
  /** A sender address in the provider's own spelling, and what the adapter must report for it. */
  from: { wire: string; parsed: string };
  /** Provider status words → ours; undefined = deliberately ignored. */
  statusMapping: Array<[string, MessageStatus | undefined]>;
  /** The identity verdict the adapter's permanent recipient error must carry. */
  permanentIdentity: 'opted_out' | 'unreachable';
  /** Whether findSent can find an accepted send whose answer was lost; if not, why (stated in the skip). */
  ambiguousLookup: { supported: true } | { supported: false; reason: string };
  start(): Promise<ContractDriver>;
}

/** Captures what a fake POSTs to "our" webhook URL, as the web layer would hand it to the adapter. */
async function captureWebhooks() {
  const captured: WebhookRequest[] = [];
  const receiver = await startWebhookReceiver(({ request }) => {
    captured.push(request);
    return {};
  });
  const take = (count: number) => {
    if (captured.length < count) throw new Error(`expected ${count} webhooks, got ${captured.length}`);
    return captured.splice(0, count);
  };
  return { url: receiver.url, take, close: () => receiver.close() };
}

const TWILIO = { accountSid: 'AC' + 'c'.repeat(32), authToken: 'contract_auth_token_0123456789ab', fromNumber: '+15005550006' };

const twilioSms: ContractEntry = {
  name: 'Twilio SMS',
  channel: 'sms',
  from: { wire: '+15551110001', parsed: '+15551110001' },
  statusMapping: [
    ['queued', 'queued'],
    ['sending', 'sending'],
    ['sent', 'sent'],
    ['delivered', 'delivered'],
    ['undelivered', 'undelivered'],
    ['failed', 'failed'],
    ['read', 'read'],
    ['canceled', 'failed'],
    ['receiving', undefined],
  ],
  permanentIdentity: 'opted_out',
  ambiguousLookup: { supported: true },
  async start() {
    const fake = await startFakeTwilio({ accountSid: TWILIO.accountSid, authToken: TWILIO.authToken });
    const hooks = await captureWebhooks();
    const adapter = createTwilioSms({ ...TWILIO, apiBase: fake.url, statusCallbackUrl: `${hooks.url}/status`, timeoutMs: 2_000 });
    const recipient = '+15551119999';
    const inbound = async (m: { from: string; text: string; id: string }) => {
      await fake.sendInboundSms({ webhookUrl: `${hooks.url}/sms`, from: m.from, to: TWILIO.fromNumber, body: m.text, messageSid: m.id });
      return hooks.take(1)[0]!;
    };
    return {
      adapter,
      outbound: (text) => ({ channel: 'sms', to: recipient, body: text, media: [] }),
      inbound,
      // Twilio sends one webhook per message, never a batch.
      async inboundBatch(items) {
        const requests: WebhookRequest[] = [];
        for (const item of items) requests.push(await inbound(item));
        return requests;
      },
      async statuses(sid, statuses) {
        for (const status of statuses) await fake.sendStatusCallback({ messageSid: sid, status, url: `${hooks.url}/status` });
        return hooks.take(statuses.length);
      },
      fault(kind) {
        if (kind === '429') fake.enqueueFault({ kind: 'status', status: 429 });
        else if (kind === '5xx') fake.enqueueFault({ kind: 'status', status: 503 });
        else if (kind === 'drop-after-accept') fake.enqueueFault({ kind: 'drop-after-accept' });
        else if (kind === 'permanent-identity') fake.optOut(recipient);
        // 21617: body too long, a permanent error about the message, not the recipient.
        else if (kind === 'permanent') fake.optIn(recipient);
      },
      received: () => fake.received.map((m) => ({ id: m.sid, to: m.to, text: m.body })),
      async close() {
        await hooks.close();
        await fake.close();
      },
    };
  },
};

function metaDriverBase(fake: FakeMeta, hooks: Awaited<ReturnType<typeof captureWebhooks>>, api: 'messenger' | 'whatsapp') {
  return {
    received: () =>
      fake.received
        .filter((m) => m.api === api)
        .map((m) => ({ id: m.id, to: m.to, text: api === 'messenger' ? m.json.message?.text : m.json.text?.body })),
    async close() {
      await hooks.close();
      await fake.close();
    },
  };
}

const META_AMBIGUOUS = {
  supported: false as const,
  reason: "Meta's Send API and Cloud API can neither list sent messages nor take an idempotency key, so an ambiguous send is resent (at-least-once)",
};

const messenger: ContractEntry = {
  name: 'Meta Messenger',
  channel: 'messenger',
  from: { wire: '7001', parsed: '7001' },
  // Delivery receipts list mids; read receipts are only a watermark (meta-webhooks.int.test.ts covers them).
  statusMapping: [['delivered', 'delivered']],
  permanentIdentity: 'unreachable',
  ambiguousLookup: META_AMBIGUOUS,
  async start() {
    const fake = await startFakeMeta();
    const hooks = await captureWebhooks();
    const o = fake.options;
    const adapter = createMessenger({ appSecret: o.appSecret, verifyToken: 'v', pageAccessToken: o.pageAccessToken, pageId: o.pageId, graphApiBase: fake.url, timeoutMs: 2_000 });
    const psid = '7999';
    fake.setLastInbound('messenger', psid, Date.now());
    return {
      adapter,
      outbound: (text) => ({ channel: 'messenger', to: psid, body: text, media: [], lastInboundAt: new Date(Date.now() - 60_000) }),
      async inbound(m) {
        await fake.sendMessengerText({ webhookUrl: `${hooks.url}/messenger`, psid: m.from, text: m.text, mid: m.id, timestamp: m.at });
        return hooks.take(1)[0]!;
      },
      async inboundBatch(items) {
        await fake.sendMessengerBatch({ webhookUrl: `${hooks.url}/messenger`, entries: [items.map((m) => ({ type: 'text' as const, psid: m.from, text: m.text, mid: m.id, timestamp: m.at }))] });
        return hooks.take(1);
      },
      // Messenger reports delivery per mid (and read only as a watermark, covered in meta-webhooks.int.test.ts).
      async statuses(mid, statuses) {
        for (const status of statuses) {
          if (status !== 'delivered') throw new Error(`Messenger has no per-message ${status} event`);
          await fake.sendMessengerDelivery({ webhookUrl: `${hooks.url}/messenger`, psid, mids: [mid] });
        }
        return hooks.take(statuses.length);
      },
      fault(kind) {
        if (kind === '429') fake.injectFault({ kind: 'status', status: 429 });
        else if (kind === '5xx') fake.injectFault({ kind: 'status', status: 500 });
        else if (kind === 'drop-after-accept') fake.injectFault({ kind: 'drop-after-accept' });
        else if (kind === 'permanent-identity') fake.injectFault({ kind: 'graph-error', status: 400, code: 551, subcode: 1545041, message: "This person isn't available right now." });
        else fake.injectFault({ kind: 'graph-error', status: 400, code: 100, message: '(#100) Invalid parameter' });
      },
      ...metaDriverBase(fake, hooks, 'messenger'),
    };
  },
};

const whatsapp: ContractEntry = {
  name: 'Meta WhatsApp Cloud',
  channel: 'whatsapp',
  from: { wire: '15551110002', parsed: '+15551110002' },
  statusMapping: [
    ['sent', 'sent'],
    ['delivered', 'delivered'],
    ['read', 'read'],
    ['failed', 'failed'],
    ['deleted', undefined],
  ],
  permanentIdentity: 'unreachable',
  ambiguousLookup: META_AMBIGUOUS,
  async start() {
    const fake = await startFakeMeta();
    const hooks = await captureWebhooks();
    const o = fake.options;
    const adapter = createWhatsApp({ appSecret: o.appSecret, verifyToken: 'v', accessToken: o.whatsappAccessToken, phoneNumberId: o.phoneNumberId, graphApiBase: fake.url, timeoutMs: 2_000 });
    const to = '+15551119998';
    fake.setLastInbound('whatsapp', to, Date.now());
    const toEntry = (m: { from: string; text: string; id: string; at: Date }) => ({ type: 'text' as const, from: m.from, text: m.text, id: m.id, timestamp: m.at });
    return {
      adapter,
      outbound: (text) => ({ channel: 'whatsapp', to, body: text, media: [], lastInboundAt: new Date(Date.now() - 60_000) }),
      async inbound(m) {
        await fake.sendWhatsAppBatch({ webhookUrl: `${hooks.url}/whatsapp`, entries: [[toEntry(m)]] });
        return hooks.take(1)[0]!;
      },
      async inboundBatch(items) {
        await fake.sendWhatsAppBatch({ webhookUrl: `${hooks.url}/whatsapp`, entries: [items.map(toEntry)] });
        return hooks.take(1);
      },
      async statuses(wamid, statuses) {
        await fake.sendWhatsAppBatch({ webhookUrl: `${hooks.url}/whatsapp`, entries: [statuses.map((status) => ({ type: 'status' as const, id: wamid, status }))] });
        return hooks.take(1);
      },
      fault(kind) {
        if (kind === '429') fake.injectFault({ kind: 'status', status: 429 });
        else if (kind === '5xx') fake.injectFault({ kind: 'status', status: 503 });
        else if (kind === 'drop-after-accept') fake.injectFault({ kind: 'drop-after-accept' });
        else if (kind === 'permanent-identity') fake.injectFault({ kind: 'graph-error', status: 400, code: 131026, message: 'Message undeliverable' });
        else fake.injectFault({ kind: 'graph-error', status: 400, code: 100, message: '(#100) Invalid parameter' });
      },
      ...metaDriverBase(fake, hooks, 'whatsapp'),
    };
  },
};

/** The table: one line per provider. */
const CONTRACT: ContractEntry[] = [twilioSms, messenger, whatsapp];

const sendError = async (promise: Promise<unknown>): Promise<ProviderError> => {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(ProviderError);
    return error as ProviderError;
  }
  throw new Error('expected the send to fail');
};
const opts = () => ({ outboxId: 'contract', signal: AbortSignal.timeout(5_000) });
const inboundOf = (events: ChannelEvent[]) => events.filter((e): e is InboundMessage => e.kind === 'inbound');
const statusesOf = (events: ChannelEvent[]) => events.filter((e): e is DeliveryStatus => e.kind === 'status');
let counter = 0;
const uniqueId = (entry: ContractEntry) => (entry.channel === 'sms' ? 'SM' + (++counter).toString(16).padStart(32, '0') : `${entry.channel === 'whatsapp' ? 'wamid.' : 'm_'}contract${++counter}`);

describe.each(CONTRACT)('adapter contract: $name', (entry) => {
  let d: ContractDriver;
  beforeAll(async () => {
    d = await entry.start();
  });
  afterAll(async () => {
    await d.close();
  });

  it('parses a signed inbound message into our vocabulary', async () => {
    const id = uniqueId(entry);
    const events = d.adapter.parseWebhook(await d.inbound({ from: entry.from.wire, text: 'Hello ✓ café', id, at: new Date() }));
    expect(inboundOf(events)).toMatchObject([{ kind: 'inbound', channel: entry.channel, provider: d.adapter.provider, providerMessageId: id, from: entry.from.parsed, body: 'Hello ✓ café' }]);
  });

  it('rejects a missing or wrong signature with 403 before reading the body', async () => {
    const request = await d.inbound({ from: entry.from.wire, text: 'sign me', id: uniqueId(entry), at: new Date() });
    const tampered: WebhookRequest = { ...request, rawBody: Buffer.from(request.rawBody.toString('utf8').replace('sign', 'SIGN')) };
    const unsigned: WebhookRequest = { ...request, headers: Object.fromEntries(Object.entries(request.headers).filter(([k]) => !/signature/i.test(k))) };
    for (const bad of [tampered, unsigned]) {
      let thrown: unknown;
      try {
        d.adapter.parseWebhook(bad);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(AppError);
      expect((thrown as AppError).status).toBe(403);
    }
  });

  it('a duplicate webhook carries the same provider id (the storage dedupe key)', async () => {
    const id = uniqueId(entry);
    const request = await d.inbound({ from: entry.from.wire, text: 'twice', id, at: new Date() });
    const first = d.adapter.parseWebhook(request);
    const again = d.adapter.parseWebhook({ ...request, rawBody: Buffer.from(request.rawBody) });
    expect(inboundOf(again).map((e) => e.providerMessageId)).toEqual(inboundOf(first).map((e) => e.providerMessageId));
    expect(inboundOf(first)[0]!.providerMessageId).toBe(id);
  });

  it('parses a batch of events sent out of order, every one, each with its provider timestamp when the provider gives one', async () => {
    const t = Date.now();
    const items = [3, 1, 2].map((n) => ({ from: entry.from.wire, text: `message ${n}`, id: uniqueId(entry), at: new Date(t + n * 1000) }));
    const requests = await d.inboundBatch(items);
    const events = requests.flatMap((r) => inboundOf(d.adapter.parseWebhook(r)));
    expect(events.map((e) => e.providerMessageId)).toEqual(items.map((i) => i.id));
    for (const event of events) if (event.receivedAt) expect(event.receivedAt.getTime()).toBe(items.find((i) => i.id === event.providerMessageId)!.at.getTime() - (entry.channel === 'whatsapp' ? (t % 1000) : 0));
  });

  it('sends once and returns the provider id the fake assigned', async () => {
    const before = d.received().length;
    const { providerMessageId } = await d.adapter.send(d.outbound('send success'), opts());
    const received = d.received().slice(before);
    expect(received).toEqual([{ id: providerMessageId, to: d.outbound('').to, text: 'send success' }]);
  });

  it('maps provider statuses to ours, ignoring the ones we do not track', async (ctx) => {
    if (entry.statusMapping.length === 0) ctx.skip(`${entry.name} reports no per-message statuses`);
    const { providerMessageId } = await d.adapter.send(d.outbound('status mapping'), opts());
    for (const [providerStatus, ours] of entry.statusMapping) {
      const events = (await d.statuses(providerMessageId, [providerStatus])).flatMap((r) => statusesOf(d.adapter.parseWebhook(r)));
      expect(events.map((e) => e.status), providerStatus).toEqual(ours ? [ours] : []);
      if (ours) expect(events[0]).toMatchObject({ kind: 'status', channel: entry.channel, provider: d.adapter.provider, providerMessageId });
    }
  });

  it('429 is retryable and not sent; 5xx is retryable with an unknown outcome', async () => {
    d.fault('429');
    expect((await sendError(d.adapter.send(d.outbound('rate limited'), opts()))).details).toMatchObject({ retryable: true, outcome: 'not-sent' });
    d.fault('5xx');
    expect((await sendError(d.adapter.send(d.outbound('server error'), opts()))).details).toMatchObject({ retryable: true, outcome: 'unknown' });
  });

  it('a permanent error is not retryable; one about the recipient names the identity verdict', async () => {
    d.fault('permanent-identity');
    const identity = await sendError(d.adapter.send(d.outbound('to an unreachable recipient'), opts()));
    expect(identity.details).toMatchObject({ retryable: false, outcome: 'not-sent', identity: entry.permanentIdentity });
    d.fault('permanent');
    if (entry.channel !== 'sms') {
      const content = await sendError(d.adapter.send(d.outbound('invalid'), opts()));
      expect(content.details).toMatchObject({ retryable: false, outcome: 'not-sent' });
      expect(content.details.identity).toBeUndefined();
    } else {
      const tooLong = await sendError(d.adapter.send({ ...d.outbound(''), body: 'x'.repeat(1601) }, opts()));
      expect(tooLong.details).toMatchObject({ retryable: false, outcome: 'not-sent' });
      expect(tooLong.details.identity).toBeUndefined();
    }
  });

  const lookup = entry.ambiguousLookup;
  (lookup.supported ? it : it.skip)(
    lookup.supported ? 'finds a send whose answer was lost (connection dropped after the provider accepted it)' : `lookup of an ambiguous send — skipped: ${lookup.reason}`,
    async () => {
      const since = new Date(Date.now() - 1_000);
      d.fault('drop-after-accept');
      const error = await sendError(d.adapter.send(d.outbound('accepted, answer lost'), opts()));
      expect(error.details).toMatchObject({ retryable: true, outcome: 'unknown' });
      const accepted = d.received().find((m) => m.text === 'accepted, answer lost')!;
      expect(await d.adapter.findSent(d.outbound('accepted, answer lost'), { since, signal: AbortSignal.timeout(5_000) })).toEqual([accepted.id]);
    },
  );

  if (!lookup.supported) {
    it('with no lookup, findSent answers [] even for a send the provider accepted (so the outbox resends)', async () => {
      const since = new Date(Date.now() - 1_000);
      d.fault('drop-after-accept');
      await sendError(d.adapter.send(d.outbound('accepted, answer lost'), opts()));
      expect(d.received().some((m) => m.text === 'accepted, answer lost')).toBe(true);
      expect(await d.adapter.findSent(d.outbound('accepted, answer lost'), { since, signal: AbortSignal.timeout(5_000) })).toEqual([]);
    });
  }
});

describe.each(backends())('adapter contract, stored, on $name', (backend) => {
  describe.each(CONTRACT)('$name', (entry) => {
    it('a duplicate webhook is stored once; statuses out of order end at the furthest', async () => {
      const d = await entry.start();
      const database = await backend.create();
      try {
        const request = await d.inbound({ from: entry.from.wire, text: 'stored once', id: uniqueId(entry), at: new Date() });
        for (const copy of [request, request]) for (const event of inboundOf(d.adapter.parseWebhook(copy))) await recordInbound(database.db, event);
        expect((await database.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM messages`)).rows[0]!.n).toBe(1);

        const { providerMessageId } = await d.adapter.send(d.outbound('tracked'), opts());
        const patient = (await database.db.query<{ patient_id: string }>(`SELECT patient_id FROM messages LIMIT 1`)).rows[0]!;
        await database.db.query(`UPDATE patients SET last_seq = last_seq + 1 WHERE id = $1`, [patient.patient_id]);
        await database.db.query(
          `INSERT INTO messages (patient_id, seq, direction, channel, address, provider, provider_message_id, body, status) VALUES ($1, 2, 'outbound', $2, 'x', $3, $4, 'tracked', 'queued')`,
          [patient.patient_id, entry.channel, d.adapter.provider, providerMessageId],
        );
        const order = entry.channel === 'messenger' ? ['delivered', 'delivered'] : entry.channel === 'whatsapp' ? ['read', 'sent', 'delivered'] : ['delivered', 'sent', 'queued'];
        const events = (await d.statuses(providerMessageId, order)).flatMap((r) => statusesOf(d.adapter.parseWebhook(r)));
        for (const event of events) await applyDeliveryStatus(database.db, event);
        const final = (await database.db.query<{ status: string }>(`SELECT status FROM messages WHERE provider_message_id = $1`, [providerMessageId])).rows[0]!.status;
        expect(final).toBe(entry.channel === 'whatsapp' ? 'read' : 'delivered');
      } finally {
        await database.drop();
        await d.close();
      }
    });
  });
});
