import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import type { ChannelAdapter, WebhookRequest } from './channel.ts';
import type { Channel, ChannelEvent, DeliveryStatus, InboundMessage, MessageStatus, OutboundMessage } from '../core/types.ts';
import { AppError, ProviderError } from '../errors.ts';
import { createTwilioSms } from './twilio-sms.ts';
import { createMessenger } from './meta-messenger.ts';
import { createWhatsApp } from './whatsapp.ts';
import { createTelnyxSms } from './telnyx-sms.ts';
import { createEmailChannel } from './email.ts';
import { createWebchatChannel } from './webchat.ts';
import { startFakeTelnyx } from '../test/fake-telnyx.ts';
import { startFakeSmtp } from '../test/fake-smtp.ts';
import type { Db } from '../db/db.ts';
import { startFakeTwilio } from '../test/fake-twilio.ts';
import { startFakeMeta, startWebhookReceiver, type FakeMeta } from '../test/fake-meta.ts';
import { backends, type TestBackend, type TestDatabase } from '../test/databases.ts';
import { recordInbound } from '../db/patients.ts';
import { applyDeliveryStatus } from '../db/messages.ts';

/**
 * The adapter contract: every adapter, against its loopback fake, must behave the same way on the questions the
 * rest of the system depends on. Adding a provider = its adapter file + its fake + one entry in CONTRACT below
 * (docs/ARCHITECTURE.md §8). A driver hides only how the fake is told to do something; every assertion is about
 * what the adapter returned or threw for what crossed the wire.
 */

type Fault = '429' | '5xx' | 'permanent' | 'permanent-identity' | 'drop-after-accept';

/**
 * The contract's questions that an entry may skip, each with its reason stated in the skipped test's name. Only a
 * question that cannot arise for the channel is skipped (e.g. webhook questions for a channel with no provider
 * webhooks); a question that applies runs for real.
 */
type Question = 'inbound' | 'signature' | 'duplicate-webhook' | 'batch' | 'status-mapping' | 'rate-limit' | 'server-error' | 'permanent-identity';

interface ContractDriver {
  adapter: ChannelAdapter;
  /** A message the adapter may send right now (the recipient has written, inside any window). */
  outbound(text: string): OutboundMessage;
  /** One signed inbound webhook per message, as the provider sends it, captured at a loopback receiver. Absent: no provider webhooks. */
  inbound?(args: { from: string; text: string; id: string; at: Date }): Promise<WebhookRequest>;
  /** Several inbound messages as the provider delivers them: in one request where it batches, else one each. */
  inboundBatch?(items: Array<{ from: string; text: string; id: string; at: Date }>): Promise<WebhookRequest[]>;
  /** Signed status webhooks for a message the fake accepted, in the order given. */
  statuses?(providerMessageId: string, statuses: string[]): Promise<WebhookRequest[]>;
  /** Further forged versions of a genuine webhook (beyond tampered body and missing signature), e.g. a stale timestamp. */
  forgeries?(request: WebhookRequest): WebhookRequest[];
  /** For adapters whose send reads our own tables: writes the message and its outbox row, returns the outbox id. */
  prepare?(message: OutboundMessage): Promise<string>;
  /** A message the provider refuses permanently for a reason that is not the recipient (default: see the test). */
  refusedMessage?(): OutboundMessage;
  fault(kind: Fault): void;
  /** What the fake accepted, as it crossed the wire. */
  received(): Array<{ id: string; to: string; text: string }> | Promise<Array<{ id: string; to: string; text: string }>>;
  close(): Promise<void>;
}

interface ContractEntry {
  name: string;
  channel: Channel;
  /** A sender address in the provider's own spelling, and what the adapter must report for it. */
  from: { wire: string; parsed: string };
  /** Provider status words → ours; undefined = deliberately ignored. */
  statusMapping: Array<[string, MessageStatus | undefined]>;
  /** The identity verdict the adapter's permanent recipient error must carry; `none`: it carries none, and why. */
  permanentIdentity: 'opted_out' | 'unreachable' | { none: string };
  /**
   * Whether findSent can find an accepted send whose answer was lost; if not, why (stated in the skip).
   * `idempotentResend`: there is nothing to look up because a resend of the same outbox row returns the first send.
   * The adapter's own `lookup` declaration, which the outbox acts on, must say the same (see `declaredLookup`).
   */
  ambiguousLookup: { supported: true; matchesBy?: 'recipient-and-time' } | { supported: false; reason: string; idempotentResend?: true };
  /** Questions that cannot arise for this channel, each with the reason. */
  skips?: Partial<Record<Question, string>>;
  /** The outcome a server-side failure reports; default 'unknown' (the provider may have the message). */
  serverErrorOutcome?: 'unknown' | 'not-sent';
  /** Status webhooks delivered out of order for the stored test, and the status the message must end at. */
  outOfOrder?: { statuses: string[]; final: MessageStatus };
  /** The adapter reads our own tables: every contract case of it runs once per database backend. */
  storage?: true;
  start(database?: TestDatabase): Promise<ContractDriver>;
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
  outOfOrder: { statuses: ['delivered', 'sent', 'queued'], final: 'delivered' },
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
  reason: "Meta's Send API and Cloud API can neither list sent messages nor take an idempotency key, so an ambiguous send is held as uncertain for a coordinator",
};

const messenger: ContractEntry = {
  name: 'Meta Messenger',
  channel: 'messenger',
  from: { wire: '7001', parsed: '7001' },
  // Delivery receipts list mids; read receipts are only a watermark (meta-webhooks.int.test.ts covers them).
  statusMapping: [['delivered', 'delivered']],
  permanentIdentity: 'unreachable',
  ambiguousLookup: META_AMBIGUOUS,
  outOfOrder: { statuses: ['delivered', 'delivered'], final: 'delivered' },
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
  outOfOrder: { statuses: ['read', 'sent', 'delivered'], final: 'read' },
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

const TELNYX = { apiKey: 'KEY0123456789ABCDEF_contract', fromNumber: '+15005550006' };

const telnyxSms: ContractEntry = {
  name: 'Telnyx SMS',
  channel: 'sms',
  from: { wire: '+15551110003', parsed: '+15551110003' },
  statusMapping: [
    ['queued', 'queued'],
    ['sending', 'sending'],
    ['sent', 'sent'],
    ['delivered', 'delivered'],
    ['delivery_unconfirmed', 'sent'],
    ['delivery_failed', 'undelivered'],
    ['sending_failed', 'failed'],
    ['webhook_delivered', undefined],
  ],
  permanentIdentity: 'opted_out',
  // Telnyx's detail records carry no body: findSent lists every outbound send to the recipient around `since`.
  ambiguousLookup: { supported: true, matchesBy: 'recipient-and-time' },
  outOfOrder: { statuses: ['delivered', 'sent', 'queued'], final: 'delivered' },
  async start() {
    const fake = await startFakeTelnyx({ apiKey: TELNYX.apiKey });
    const hooks = await captureWebhooks();
    const adapter = createTelnyxSms({ ...TELNYX, publicKey: fake.publicKey, apiBase: `${fake.url}/v2`, webhookUrl: `${hooks.url}/telnyx/sms`, timeoutMs: 2_000 });
    const recipient = '+15551119997';
    const inbound = async (m: { from: string; text: string; id: string }) => {
      await fake.sendInboundSms({ webhookUrl: `${hooks.url}/telnyx/sms`, from: m.from, to: TELNYX.fromNumber, body: m.text, messageSid: m.id });
      return hooks.take(1)[0]!;
    };
    return {
      adapter,
      outbound: (text) => ({ channel: 'sms', to: recipient, body: text, media: [] }),
      inbound,
      // Telnyx sends one event per request, never a batch.
      async inboundBatch(items) {
        const requests: WebhookRequest[] = [];
        for (const item of items) requests.push(await inbound(item));
        return requests;
      },
      async statuses(id, statuses) {
        for (const status of statuses) await fake.sendStatusCallback({ messageSid: id, status, url: `${hooks.url}/telnyx/sms` });
        return hooks.take(statuses.length);
      },
      // The signature covers `${telnyx-timestamp}|${body}`: a genuine signature over a timestamp from 10 minutes ago
      // (outside the 300 s tolerance) must be refused as a replay, and so must a valid timestamp paired with another's signature.
      forgeries(request) {
        const body = request.rawBody.toString('utf8');
        const stale = fake.signWebhook(body, Math.floor(Date.now() / 1000) - 600);
        const otherBody = fake.signWebhook(body.replace('}', ' }'), Math.floor(Date.now() / 1000));
        return [
          { ...request, headers: { ...request.headers, ...stale } },
          { ...request, headers: { ...request.headers, 'telnyx-signature-ed25519': otherBody['telnyx-signature-ed25519'] } },
        ];
      },
      // 10004: neither text nor media, a permanent error about the message, not the recipient.
      refusedMessage: () => ({ channel: 'sms', to: recipient, body: '', media: [] }),
      fault(kind) {
        if (kind === '429') fake.enqueueFault({ kind: 'status', status: 429 });
        else if (kind === '5xx') fake.enqueueFault({ kind: 'status', status: 503 });
        else if (kind === 'drop-after-accept') fake.enqueueFault({ kind: 'drop-after-accept' });
        // 40300: blocked due to STOP.
        else if (kind === 'permanent-identity') fake.optOut(recipient);
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

/** Writes what the relay would have written before calling send: a patient, their identity, the message and its outbox row. */
async function outboxWriter(db: Db, channel: Channel, address: (patientId: string) => string) {
  const patientId = (await db.query<{ id: string }>(`INSERT INTO patients (display_name) VALUES ('Contract patient') RETURNING id`)).rows[0]!.id;
  const to = address(patientId);
  await db.query(`INSERT INTO channel_identities (patient_id, channel, address) VALUES ($1, $2, $3)`, [patientId, channel, to]);
  return {
    to,
    async write(message: OutboundMessage): Promise<string> {
      return db.transaction(async (tx) => {
        const seq = (await tx.query<{ last_seq: number }>(`UPDATE patients SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq`, [patientId])).rows[0]!.last_seq;
        const messageId = (
          await tx.query<{ id: string }>(
            `INSERT INTO messages (patient_id, seq, direction, channel, address, body, status) VALUES ($1, $2, 'outbound', $3, $4, $5, 'queued') RETURNING id`,
            [patientId, seq, channel, message.to, message.body],
          )
        ).rows[0]!.id;
        return (await tx.query<{ id: string }>(`INSERT INTO outbox (message_id, patient_id, seq) VALUES ($1, $2, $3) RETURNING id`, [messageId, patientId, seq])).rows[0]!.id;
      });
    },
  };
}

const NO_PROVIDER_WEBHOOKS = (how: string): Partial<Record<Question, string>> => ({
  inbound: `no provider webhook to parse: ${how}`,
  signature: `no provider webhook to sign: ${how}`,
  'duplicate-webhook': `no provider webhook to repeat: ${how}`,
  batch: `no provider webhook to batch: ${how}`,
  'status-mapping': 'no provider status vocabulary: the adapter emits no delivery statuses of its own',
});

const email: ContractEntry = {
  name: 'Email (SMTP)',
  channel: 'email',
  from: { wire: 'patient@example.org', parsed: 'patient@example.org' },
  statusMapping: [],
  permanentIdentity: {
    none: 'classifySmtpError reads only the reply code, so a 550 "no such user" is permanent like any other 5xx but names no identity verdict',
  },
  ambiguousLookup: {
    supported: false,
    reason: 'SMTP cannot ask a server what it accepted, so an ambiguous send is held as uncertain for a coordinator (a resend keeps its Message-ID)',
  },
  skips: {
    ...NO_PROVIDER_WEBHOOKS('inbound email arrives over our SMTP listener (src/services/smtp-listener.ts)'),
    'status-mapping': 'SMTP has no delivery statuses: acceptance by the server (250 after DATA) is all send() learns',
  },
  storage: true,
  async start(database) {
    const db = database!.db;
    const fake = await startFakeSmtp();
    const adapter = createEmailChannel({ host: fake.host, port: fake.port, secure: false, from: 'Care Team <care@clinic.example>', defaultSubject: 'Your care team', timeoutMs: 2_000 }, { db });
    const outbox = await outboxWriter(db, 'email', () => 'patient-contract@example.org');
    return {
      adapter,
      outbound: (text) => ({ channel: 'email', to: outbox.to, body: text, media: [] }),
      prepare: (message) => outbox.write(message),
      fault(kind) {
        // 4xx: "try again later" (RFC 5321 §4.2.1), refused before the server kept it: the SMTP counterpart of 429.
        if (kind === '429') fake.enqueueFault({ kind: 'reply', code: 451, message: '4.7.1 Try again later' });
        // The server's failure mid-transaction: the connection drops after DATA, before any reply.
        else if (kind === '5xx') fake.enqueueFault({ kind: 'drop-before-accept' });
        else if (kind === 'drop-after-accept') fake.enqueueFault({ kind: 'drop-after-accept' });
        else if (kind === 'permanent-identity') fake.enqueueFault({ kind: 'reply', code: 550, message: '5.1.1 No such user here' });
        else fake.enqueueFault({ kind: 'reply', code: 554, message: '5.6.0 Message content rejected' });
      },
      received: () => fake.received.map((m) => ({ id: m.messageId ?? '', to: m.rcptTo[0] ?? '', text: m.text.trim() })),
      close: () => fake.close(),
    };
  },
};

const webchat: ContractEntry = {
  name: 'Web chat (our database stream)',
  channel: 'webchat',
  from: { wire: 'patient:contract', parsed: 'patient:contract' },
  statusMapping: [],
  permanentIdentity: { none: "the provider is our own stream: nothing on the patient's side can refuse a message" },
  ambiguousLookup: {
    supported: false,
    reason: 'the push is idempotent per message (UNIQUE message_id in webchat_stream_items), so a resend returns the first push instead of a second copy',
    idempotentResend: true,
  },
  skips: {
    ...NO_PROVIDER_WEBHOOKS("the patient's page posts to /chat/api on our own server, authenticated by its signed link"),
    'status-mapping': "no provider status vocabulary: the page's receipts are our own 'delivered'/'read' (web chat API tests)",
    'rate-limit': 'no rate limit: the provider is our own database',
    'permanent-identity': "no recipient-side refusal: the provider is our own stream, and nothing on the patient's side can refuse a message",
  },
  // A failed transaction may or may not have committed; the adapter reports not-sent because a resend is harmless
  // (it returns the first push), see the idempotent-resend test.
  serverErrorOutcome: 'not-sent',
  storage: true,
  async start(database) {
    const db = database!.db;
    let failNextTransaction = false;
    // Our database failing mid-push, through the adapter's own dependency (a wrapper, not a mock of our modules).
    const flaky = new Proxy(db, {
      get(target, property) {
        if (property === 'transaction' && failNextTransaction) {
          failNextTransaction = false;
          return async () => {
            throw new Error('Connection terminated unexpectedly');
          };
        }
        const value = Reflect.get(target, property, target) as unknown;
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
    const adapter = createWebchatChannel({ db: flaky });
    const outbox = await outboxWriter(db, 'webchat', (patientId) => `patient:${patientId}`);
    let unknownOutboxNext = false;
    return {
      adapter,
      outbound: (text) => ({ channel: 'webchat', to: outbox.to, body: text, media: [] }),
      async prepare(message) {
        const outboxId = await outbox.write(message);
        if (!unknownOutboxNext) return outboxId;
        unknownOutboxNext = false;
        return randomUUID();
      },
      fault(kind) {
        if (kind === '5xx') failNextTransaction = true;
        // An outbox row that does not exist: a permanent error about the send, not the recipient.
        else if (kind === 'permanent') unknownOutboxNext = true;
        else throw new Error(`web chat has no ${kind} fault`);
      },
      // What "crossed the wire": the patient's chat stream, in stream order.
      async received() {
        const rows = await db.query<{ id: string; to: string; text: string }>(
          `SELECT i.message_id AS id, m.address AS to, m.body AS text FROM webchat_stream_items i JOIN messages m ON m.id = i.message_id ORDER BY i.patient_id, i.stream_seq`,
        );
        return rows.rows.map((r) => ({ id: r.id, to: r.to, text: r.text }));
      },
      close: async () => {},
    };
  },
};

/** The table: one line per provider. */
const CONTRACT: ContractEntry[] = [twilioSms, messenger, whatsapp, telnyxSms, email, webchat];

const sendError = async (promise: Promise<unknown>): Promise<ProviderError> => {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(ProviderError);
    return error as ProviderError;
  }
  throw new Error('expected the send to fail');
};
const opts = (outboxId = 'contract') => ({ outboxId, signal: AbortSignal.timeout(5_000) });
/** Sends as the relay would: after writing the message and its outbox row where the adapter reads them. */
const send = async (d: ContractDriver, message: OutboundMessage) => d.adapter.send(message, opts(d.prepare ? await d.prepare(message) : undefined));
const inboundOf = (events: ChannelEvent[]) => events.filter((e): e is InboundMessage => e.kind === 'inbound');
const statusesOf = (events: ChannelEvent[]) => events.filter((e): e is DeliveryStatus => e.kind === 'status');
let counter = 0;
const uniqueId = (entry: ContractEntry) => (entry.channel === 'sms' ? 'SM' + (++counter).toString(16).padStart(32, '0') : `${entry.channel === 'whatsapp' ? 'wamid.' : 'm_'}contract${++counter}`);

/** The `ChannelAdapter.lookup` an entry's `ambiguousLookup` implies: the relay trusts the declaration, the suite proves it. */
const declaredLookup = (lookup: ContractEntry['ambiguousLookup']): ChannelAdapter['lookup'] =>
  lookup.supported ? 'conclusive' : lookup.idempotentResend ? 'idempotent' : 'none';

/** A test of one contract question, or that question skipped by name with the entry's reason. */
const question = (entry: ContractEntry, name: Question, title: string, body: (ctx: TestContext) => Promise<void>) => {
  const reason = entry.skips?.[name];
  if (reason) it.skip(`${title} — skipped: ${reason}`, body);
  else it(title, body);
};

/** Storage-backed adapters run every case once per database backend; the others once. */
const CASES: Array<ContractEntry & { backend?: TestBackend }> = CONTRACT.flatMap((entry) =>
  entry.storage ? backends().map((backend) => ({ ...entry, name: `${entry.name} on ${backend.name}`, backend })) : [entry],
);

describe.each(CASES)('adapter contract: $name', (entry) => {
  let d: ContractDriver;
  let database: TestDatabase | undefined;
  beforeAll(async () => {
    database = await entry.backend?.create();
    d = await entry.start(database);
  });
  afterAll(async () => {
    await d?.close();
    await database?.drop();
  });

  question(entry, 'inbound', 'parses a signed inbound message into our vocabulary', async () => {
    const id = uniqueId(entry);
    const events = d.adapter.parseWebhook(await d.inbound!({ from: entry.from.wire, text: 'Hello ✓ café', id, at: new Date() }));
    expect(inboundOf(events)).toMatchObject([{ kind: 'inbound', channel: entry.channel, provider: d.adapter.provider, providerMessageId: id, from: entry.from.parsed, body: 'Hello ✓ café' }]);
  });

  if (entry.skips?.inbound) {
    it('with no provider webhook, parseWebhook refuses anything handed to it as one', () => {
      let thrown: unknown;
      try {
        d.adapter.parseWebhook({ publicUrl: 'https://switchboard.example/webhooks/x', headers: {}, rawBody: Buffer.from('{}') });
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(AppError);
      expect((thrown as AppError).status).toBe(400);
    });
  }

  question(entry, 'signature', 'rejects a missing or wrong signature with 403 before reading the body', async () => {
    const request = await d.inbound!({ from: entry.from.wire, text: 'sign me', id: uniqueId(entry), at: new Date() });
    const tampered: WebhookRequest = { ...request, rawBody: Buffer.from(request.rawBody.toString('utf8').replace('sign', 'SIGN')) };
    const unsigned: WebhookRequest = { ...request, headers: Object.fromEntries(Object.entries(request.headers).filter(([k]) => !/signature/i.test(k))) };
    for (const bad of [tampered, unsigned, ...(d.forgeries?.(request) ?? [])]) {
      let thrown: unknown;
      try {
        d.adapter.parseWebhook(bad);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(AppError);
      expect((thrown as AppError).status).toBe(403);
    }
    // The genuine request itself passes, so the refusals above are about the forgery, not the fixture.
    expect(inboundOf(d.adapter.parseWebhook(request))).toHaveLength(1);
  });

  question(entry, 'duplicate-webhook', 'a duplicate webhook carries the same provider id (the storage dedupe key)', async () => {
    const id = uniqueId(entry);
    const request = await d.inbound!({ from: entry.from.wire, text: 'twice', id, at: new Date() });
    const first = d.adapter.parseWebhook(request);
    const again = d.adapter.parseWebhook({ ...request, rawBody: Buffer.from(request.rawBody) });
    expect(inboundOf(again).map((e) => e.providerMessageId)).toEqual(inboundOf(first).map((e) => e.providerMessageId));
    expect(inboundOf(first)[0]!.providerMessageId).toBe(id);
  });

  question(entry, 'batch', 'parses a batch of events sent out of order, every one, each with its provider timestamp when the provider gives one', async () => {
    const t = Date.now();
    const items = [3, 1, 2].map((n) => ({ from: entry.from.wire, text: `message ${n}`, id: uniqueId(entry), at: new Date(t + n * 1000) }));
    const requests = await d.inboundBatch!(items);
    const events = requests.flatMap((r) => inboundOf(d.adapter.parseWebhook(r)));
    expect(events.map((e) => e.providerMessageId)).toEqual(items.map((i) => i.id));
    for (const event of events) if (event.receivedAt) expect(event.receivedAt.getTime()).toBe(items.find((i) => i.id === event.providerMessageId)!.at.getTime() - (entry.channel === 'whatsapp' ? (t % 1000) : 0));
  });

  it('sends once and returns the provider id the fake assigned', async () => {
    const before = (await d.received()).length;
    const { providerMessageId } = await send(d, d.outbound('send success'));
    const received = (await d.received()).slice(before);
    expect(received).toEqual([{ id: providerMessageId, to: d.outbound('').to, text: 'send success' }]);
  });

  question(entry, 'status-mapping', 'maps provider statuses to ours, ignoring the ones we do not track', async (ctx) => {
    if (entry.statusMapping.length === 0) ctx.skip(`${entry.name} reports no per-message statuses`);
    const { providerMessageId } = await send(d, d.outbound('status mapping'));
    for (const [providerStatus, ours] of entry.statusMapping) {
      const events = (await d.statuses!(providerMessageId, [providerStatus])).flatMap((r) => statusesOf(d.adapter.parseWebhook(r)));
      expect(events.map((e) => e.status), providerStatus).toEqual(ours ? [ours] : []);
      if (ours) expect(events[0]).toMatchObject({ kind: 'status', channel: entry.channel, provider: d.adapter.provider, providerMessageId });
    }
  });

  question(entry, 'rate-limit', '429 (or the provider\'s "try later") is retryable and not sent', async () => {
    const before = (await d.received()).length;
    d.fault('429');
    expect((await sendError(send(d, d.outbound('rate limited')))).details).toMatchObject({ retryable: true, outcome: 'not-sent' });
    expect((await d.received()).length).toBe(before);
  });

  question(entry, 'server-error', `5xx (or the provider failing mid-send) is retryable with ${entry.serverErrorOutcome === 'not-sent' ? 'a harmless resend' : 'an unknown outcome'}`, async () => {
    d.fault('5xx');
    expect((await sendError(send(d, d.outbound('server error')))).details).toMatchObject({ retryable: true, outcome: entry.serverErrorOutcome ?? 'unknown' });
  });

  question(entry, 'permanent-identity', 'a permanent error about the recipient is not retryable and names the identity verdict (or, where stated, none)', async () => {
    d.fault('permanent-identity');
    const identity = await sendError(send(d, d.outbound('to an unreachable recipient')));
    expect(identity.details).toMatchObject({ retryable: false, outcome: 'not-sent' });
    const verdict = entry.permanentIdentity;
    expect(identity.details.identity).toBe(typeof verdict === 'string' ? verdict : undefined);
  });

  it('a permanent error about the message is not retryable and names no identity', async () => {
    d.fault('permanent');
    if (d.refusedMessage) {
      const refused = await sendError(send(d, d.refusedMessage()));
      expect(refused.details).toMatchObject({ retryable: false, outcome: 'not-sent' });
      expect(refused.details.identity).toBeUndefined();
    } else if (entry.channel !== 'sms') {
      const content = await sendError(send(d, d.outbound('invalid')));
      expect(content.details).toMatchObject({ retryable: false, outcome: 'not-sent' });
      expect(content.details.identity).toBeUndefined();
    } else {
      const tooLong = await sendError(send(d, { ...d.outbound(''), body: 'x'.repeat(1601) }));
      expect(tooLong.details).toMatchObject({ retryable: false, outcome: 'not-sent' });
      expect(tooLong.details.identity).toBeUndefined();
    }
  });

  const lookup = entry.ambiguousLookup;
  it(`declares lookup '${declaredLookup(lookup)}', as its ambiguous-send behaviour below shows`, () => {
    expect(d.adapter.lookup).toBe(declaredLookup(lookup));
  });

  (lookup.supported ? it : it.skip)(
    lookup.supported ? 'finds a send whose answer was lost (connection dropped after the provider accepted it)' : `lookup of an ambiguous send — skipped: ${lookup.reason}`,
    async () => {
      const since = new Date(Date.now() - 1_000);
      const earlier = new Set((await d.received()).map((m) => m.id));
      d.fault('drop-after-accept');
      const error = await sendError(send(d, d.outbound('accepted, answer lost')));
      expect(error.details).toMatchObject({ retryable: true, outcome: 'unknown' });
      const accepted = (await d.received()).find((m) => m.text === 'accepted, answer lost')!;
      const found = await d.adapter.findSent(d.outbound('accepted, answer lost'), { since, signal: AbortSignal.timeout(5_000) });
      if (lookup.supported && lookup.matchesBy === 'recipient-and-time') {
        // Earlier sends to the same recipient are candidates too; the outbox skips ids already recorded against
        // other messages (every earlier send here returned its id), so the first unrecorded one must be this send.
        expect(found).toContain(accepted.id);
        expect(found.filter((id) => !earlier.has(id))).toEqual([accepted.id]);
      } else {
        expect(found).toEqual([accepted.id]);
      }
    },
  );

  if (!lookup.supported && !lookup.idempotentResend) {
    it('with no lookup, findSent answers [] even for a send the provider accepted (so the outbox must not resend on its own)', async () => {
      const since = new Date(Date.now() - 1_000);
      d.fault('drop-after-accept');
      const error = await sendError(send(d, d.outbound('accepted, answer lost')));
      expect(error.details).toMatchObject({ retryable: true, outcome: 'unknown' });
      expect((await d.received()).some((m) => m.text === 'accepted, answer lost')).toBe(true);
      expect(await d.adapter.findSent(d.outbound('accepted, answer lost'), { since, signal: AbortSignal.timeout(5_000) })).toEqual([]);
    });
  }

  if (!lookup.supported && lookup.idempotentResend) {
    it('a resend of the same outbox row returns the first send and adds no copy; findSent has nothing to find', async () => {
      const since = new Date(Date.now() - 1_000);
      const message = d.outbound('sent twice, shown once');
      const outboxId = await d.prepare!(message);
      const first = await d.adapter.send(message, opts(outboxId));
      const again = await d.adapter.send(message, opts(outboxId));
      expect(again.providerMessageId).toBe(first.providerMessageId);
      expect((await d.received()).filter((m) => m.text === 'sent twice, shown once')).toEqual([{ id: first.providerMessageId, to: message.to, text: 'sent twice, shown once' }]);
      expect(await d.adapter.findSent(message, { since, signal: AbortSignal.timeout(5_000) })).toEqual([]);
    });
  }
});

describe.each(backends())('adapter contract, stored, on $name', (backend) => {
  describe.each(CONTRACT)('$name', (entry) => {
    const skipped = entry.skips?.['duplicate-webhook'];
    (skipped ? it.skip : it)(`a duplicate webhook is stored once; statuses out of order end at the furthest${skipped ? ` — skipped: ${skipped}` : ''}`, async () => {
      const d = await entry.start();
      const database = await backend.create();
      try {
        const request = await d.inbound!({ from: entry.from.wire, text: 'stored once', id: uniqueId(entry), at: new Date() });
        for (const copy of [request, request]) for (const event of inboundOf(d.adapter.parseWebhook(copy))) await recordInbound(database.db, event);
        expect((await database.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM messages`)).rows[0]!.n).toBe(1);

        const { providerMessageId } = await d.adapter.send(d.outbound('tracked'), opts());
        const patient = (await database.db.query<{ patient_id: string }>(`SELECT patient_id FROM messages LIMIT 1`)).rows[0]!;
        await database.db.query(`UPDATE patients SET last_seq = last_seq + 1 WHERE id = $1`, [patient.patient_id]);
        await database.db.query(
          `INSERT INTO messages (patient_id, seq, direction, channel, address, provider, provider_message_id, body, status) VALUES ($1, 2, 'outbound', $2, 'x', $3, $4, 'tracked', 'queued')`,
          [patient.patient_id, entry.channel, d.adapter.provider, providerMessageId],
        );
        const { statuses: order, final: expected } = entry.outOfOrder!;
        const events = (await d.statuses!(providerMessageId, order)).flatMap((r) => statusesOf(d.adapter.parseWebhook(r)));
        for (const event of events) await applyDeliveryStatus(database.db, event);
        const final = (await database.db.query<{ status: string }>(`SELECT status FROM messages WHERE provider_message_id = $1`, [providerMessageId])).rows[0]!.status;
        expect(final).toBe(expected);
      } finally {
        await database.drop();
        await d.close();
      }
    });
  });
});
