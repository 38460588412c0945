import { createHmac, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { WebhookRequest } from '../channels/channel.ts';

/**
 * A loopback fake of Meta's Graph API for both the Messenger Send API and the WhatsApp Cloud API: a real HTTP
 * server with token checks, Meta's messaging-window rules, real response and error shapes, and signed webhooks
 * sent to our URL. Signing is done here with node:crypto, independently of src/channels/meta-signature.ts, so a
 * bug there cannot hide itself. Wire details: ../shared/reference/providers.md §6–§7.
 */

export type FakeMetaApi = 'messenger' | 'whatsapp';

/** Applies to the next Graph API request (control requests under /_fake/ are never faulted). */
export type OneShotFault =
  | { kind: 'status'; status: 429 | 500 | 503 }
  | { kind: 'latency'; ms: number }
  | { kind: 'timeout' }
  | { kind: 'drop-before-accept' }
  | { kind: 'drop-after-accept' }
  /** Any Graph error answer, e.g. 400 code 613 (rate limit without a 429) or 400 code 551 (permanent). */
  | { kind: 'graph-error'; status: number; code: number; subcode?: number; message?: string; isTransient?: boolean };

/** Random faults on every Graph API request; rates are probabilities in [0, 1]. `seed` makes them repeatable. */
export interface FaultConfig {
  latencyMs?: [number, number];
  rate429?: number;
  rate5xx?: number;
  rateTimeout?: number;
  rateDropAfterAccept?: number;
  seed?: number;
}

export interface FakeMetaOptions {
  appSecret: string;
  pageId: string;
  pageAccessToken: string;
  phoneNumberId: string;
  whatsappAccessToken: string;
  /** Our business number as WhatsApp shows it in webhook metadata: digits, no '+'. */
  displayPhoneNumber: string;
  wabaId: string;
  /** Approved WhatsApp template names; unset accepts any name. */
  templates?: string[];
}

export const FAKE_META_DEFAULTS: FakeMetaOptions = {
  appSecret: 'fake_meta_app_secret_0123456789',
  pageId: '105000000000001',
  pageAccessToken: 'EAAfakePageAccessToken',
  phoneNumberId: '106540352242922',
  whatsappAccessToken: 'EAAfakeWhatsAppAccessToken',
  displayPhoneNumber: '15550783881',
  wabaId: '102290129340398',
};

/** A message the fake accepted, as it crossed the wire. */
export interface FakeMetaSend {
  api: FakeMetaApi;
  /** The id the fake answered with: Messenger `message_id`, WhatsApp `messages[0].id`. */
  id: string;
  /** Messenger recipient.id (PSID) or WhatsApp `to`, as sent. */
  to: string;
  json: any;
  receivedAtMs: number;
}

export interface FakeMetaRequest {
  method: string;
  path: string;
  atMs: number;
}

export interface WebhookResult {
  /** Our server's answer. */
  status: number;
  body: string;
  /** The exact bytes the fake sent, and their signature. */
  rawBody: string;
  signature: string;
}

export type MessengerEventInput =
  | { type: 'text'; psid: string; text: string; mid?: string; timestamp?: Date | number; attachments?: { type: string; url: string }[] }
  | { type: 'echo'; psid: string; text: string; mid?: string; timestamp?: Date | number }
  | { type: 'delivery'; psid: string; mids?: string[]; watermark?: Date | number }
  | { type: 'read'; psid: string; watermark?: Date | number }
  | { type: 'raw'; event: Record<string, unknown> };

export type WhatsAppEventInput =
  | { type: 'text'; from: string; text: string; id?: string; timestamp?: Date | number; name?: string }
  | { type: 'media'; from: string; mediaType: 'image' | 'video' | 'audio' | 'document' | 'sticker'; mediaId: string; mimeType: string; caption?: string; id?: string; timestamp?: Date | number }
  | { type: 'status'; id: string; status: string; errorCode?: number; errorTitle?: string; recipient?: string; timestamp?: Date | number }
  /** Sent as its own change, e.g. another field or another phone number's metadata. */
  | { type: 'raw-change'; change: { field: string; value: unknown } };

export interface FakeMeta {
  readonly url: string;
  readonly options: FakeMetaOptions;
  readonly received: FakeMetaSend[];
  /** Every Graph API request, accepted or not. */
  readonly requests: FakeMetaRequest[];
  now(): Date;
  /** Freezes the fake's clock (window checks, webhook timestamps); null returns to real time. */
  setClock(now: Date | number | null): void;
  /** Records that `user` (PSID, or WhatsApp number) last wrote at `at`, without sending a webhook. */
  setLastInbound(api: FakeMetaApi, user: string, at: Date | number): void;
  setFaults(config: FaultConfig): void;
  injectFault(fault: OneShotFault): void;
  reset(): void;

  sendMessengerText(args: { webhookUrl: string; psid: string; text: string; mid?: string; timestamp?: Date | number }): Promise<WebhookResult & { mid: string; timestamp: number }>;
  sendMessengerEcho(args: { webhookUrl: string; psid: string; text: string; mid?: string }): Promise<WebhookResult & { mid: string }>;
  sendMessengerDelivery(args: { webhookUrl: string; psid: string; mids?: string[]; watermark?: Date | number }): Promise<WebhookResult>;
  sendMessengerRead(args: { webhookUrl: string; psid: string; watermark?: Date | number }): Promise<WebhookResult>;
  /** One entry per inner array, events in order. */
  sendMessengerBatch(args: { webhookUrl: string; entries: MessengerEventInput[][] }): Promise<WebhookResult>;
  sendWhatsAppText(args: { webhookUrl: string; from: string; text: string; id?: string; timestamp?: Date | number }): Promise<WebhookResult & { id: string; timestamp: number }>;
  sendWhatsAppStatus(args: { webhookUrl: string; id: string; status: string; errorCode?: number; errorTitle?: string; recipient?: string }): Promise<WebhookResult>;
  /** One entry per inner array; its messages share one change, its statuses another. */
  sendWhatsAppBatch(args: { webhookUrl: string; entries: WhatsAppEventInput[][] }): Promise<WebhookResult>;
  /** POSTs bytes as Meta would; signs them unless `signature` is given (null sends no signature header). */
  postWebhook(args: { webhookUrl: string; body: string | Buffer; signature?: string | null }): Promise<WebhookResult>;
  /** Meta's subscription GET: `hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`. */
  sendVerification(args: { webhookUrl: string; verifyToken: string; challenge?: string; mode?: string }): Promise<{ status: number; body: string; challenge: string }>;
  close(): Promise<void>;
}

const HOUR_MS = 3_600_000;
const MESSENGER_TEXT_MAX = 2000;
const WHATSAPP_TEXT_MAX = 4096;

/** Meta sends JSON with non-ASCII escaped as \uXXXX and '/' as '\/' (PHP json_encode): the bytes it signs. */
export function encodeMetaJson(value: unknown): string {
  return JSON.stringify(value)
    .replace(/[\u007f-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'))
    .replace(/\//g, '\\/');
}

function sign(appSecret: string, body: Buffer): string {
  return 'sha256=' + createHmac('sha256', appSecret).update(body).digest('hex');
}

/** mulberry32: small, seedable, good enough to pick faults. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ms = (value: Date | number) => (typeof value === 'number' ? value : value.getTime());
const digitsOf = (phone: string) => phone.replace(/\D/g, '');
const fbtraceId = () => randomBytes(8).toString('base64url');

interface Answer {
  status: number;
  json: unknown;
  accepted?: FakeMetaSend;
}

function graphError(status: number, code: number, message: string, extra: Record<string, unknown> = {}): Answer {
  return { status, json: { error: { message, type: 'OAuthException', code, ...extra, fbtrace_id: fbtraceId() } } };
}

const windowClosed = () =>
  graphError(400, 10, '(#10) This message is sent outside of allowed window. Learn more about the new policy here: https://developers.facebook.com/docs/messenger-platform/policy-overview', {
    error_subcode: 2018278,
  });

export async function startFakeMeta(overrides: Partial<FakeMetaOptions> = {}): Promise<FakeMeta> {
  const options: FakeMetaOptions = { ...FAKE_META_DEFAULTS, ...overrides };
  const received: FakeMetaSend[] = [];
  const requests: FakeMetaRequest[] = [];
  const lastInbound = new Map<string, number>();
  const oneShots: OneShotFault[] = [];
  let faults: FaultConfig = {};
  let random = Math.random;
  let frozenNowMs: number | null = null;
  let closed = false;
  const sockets = new Set<Socket>();
  const sleepers = new Set<() => void>();
  const outgoing = new Set<AbortController>();

  const nowMs = () => frozenNowMs ?? Date.now();
  const tokenOf = (req: IncomingMessage, url: URL, json: any): string | undefined => {
    const auth = req.headers.authorization;
    if (auth?.startsWith('Bearer ')) return auth.slice('Bearer '.length);
    return url.searchParams.get('access_token') ?? (typeof json?.access_token === 'string' ? json.access_token : undefined);
  };

  function sleep(delayMs: number): Promise<void> {
    if (delayMs <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        sleepers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, delayMs);
      sleepers.add(done);
    });
  }

  function messengerSend(json: any): Answer {
    const recipient = json?.recipient?.id;
    if (typeof recipient !== 'string' || recipient === '') return graphError(400, 100, '(#100) The parameter recipient is required');
    const type = json.messaging_type;
    if (type !== 'RESPONSE' && type !== 'UPDATE' && type !== 'MESSAGE_TAG') {
      return graphError(400, 100, '(#100) Param messaging_type must be one of {RESPONSE, UPDATE, MESSAGE_TAG}');
    }
    const text = json.message?.text;
    if (typeof text !== 'string' && json.message?.attachment === undefined) return graphError(400, 100, '(#100) Must send either message or state');
    if (typeof text === 'string' && (text.length === 0 || text.length > MESSENGER_TEXT_MAX)) {
      return graphError(400, 100, `(#100) Length of param message[text] must be between 1 and ${MESSENGER_TEXT_MAX}`);
    }
    const last = lastInbound.get(`messenger:${recipient}`);
    if (last === undefined) return graphError(400, 100, '(#100) No matching user found', { error_subcode: 2018001 });
    const ageMs = nowMs() - last;
    if (type === 'MESSAGE_TAG') {
      if (json.tag !== 'HUMAN_AGENT') return graphError(400, 100, '(#100) Param tag must be HUMAN_AGENT for this page');
      if (ageMs > 7 * 24 * HOUR_MS) return windowClosed();
    } else if (ageMs > 24 * HOUR_MS) {
      return windowClosed();
    }
    const id = 'm_' + randomBytes(24).toString('base64url');
    return { status: 200, json: { recipient_id: recipient, message_id: id }, accepted: { api: 'messenger', id, to: recipient, json, receivedAtMs: nowMs() } };
  }

  function whatsappSend(json: any): Answer {
    if (json?.messaging_product !== 'whatsapp') return graphError(400, 100, '(#100) The parameter messaging_product is required.');
    const to = json.to;
    if (typeof to !== 'string' || !/^\+?\d{5,15}$/.test(to)) return graphError(400, 100, '(#100) Invalid parameter', { error_data: { messaging_product: 'whatsapp', details: 'to must be a phone number' } });
    const id = 'wamid.' + randomBytes(24).toString('base64url');
    const accepted: FakeMetaSend = { api: 'whatsapp', id, to, json, receivedAtMs: nowMs() };
    const ok = (extra: Record<string, unknown> = {}): Answer => ({
      status: 200,
      json: { messaging_product: 'whatsapp', contacts: [{ input: to, wa_id: digitsOf(to) }], messages: [{ id, ...extra }] },
      accepted,
    });
    if (json.type === 'text') {
      const body = json.text?.body;
      if (typeof body !== 'string' || body.length === 0 || body.length > WHATSAPP_TEXT_MAX) {
        return graphError(400, 100, '(#100) Invalid parameter', { error_data: { messaging_product: 'whatsapp', details: `text.body must be 1 to ${WHATSAPP_TEXT_MAX} characters` } });
      }
      const last = lastInbound.get(`whatsapp:${digitsOf(to)}`);
      if (last === undefined || nowMs() - last > 24 * HOUR_MS) {
        return graphError(400, 131047, '(#131047) Re-engagement message', {
          error_data: { messaging_product: 'whatsapp', details: 'Message failed to send because more than 24 hours have passed since the customer last replied to this number.' },
        });
      }
      return ok();
    }
    if (json.type === 'template') {
      const name = json.template?.name;
      const language = json.template?.language?.code;
      if (typeof name !== 'string' || typeof language !== 'string') {
        return graphError(400, 100, '(#100) Invalid parameter', { error_data: { messaging_product: 'whatsapp', details: 'template.name and template.language.code are required' } });
      }
      if (options.templates && !options.templates.includes(name)) {
        return graphError(404, 132001, '(#132001) Template name does not exist in the translation', {
          error_data: { messaging_product: 'whatsapp', details: `template name (${name}) does not exist in ${language}` },
        });
      }
      return ok({ message_status: 'accepted' });
    }
    return graphError(400, 100, '(#100) Invalid parameter', { error_data: { messaging_product: 'whatsapp', details: `unsupported message type ${String(json.type)}` } });
  }

  function api(req: IncomingMessage, url: URL, raw: Buffer): Answer {
    const match = /^\/v\d+\.\d+\/([^/]+)\/messages$/.exec(url.pathname);
    if (req.method !== 'POST' || !match) return graphError(400, 100, `Unsupported ${req.method} request.`, { error_subcode: 33 });
    const objectId = decodeURIComponent(match[1]!);
    let json: any;
    try {
      json = raw.length === 0 ? {} : JSON.parse(raw.toString('utf8'));
    } catch {
      return graphError(400, 100, '(#100) The request body is not valid JSON');
    }
    const token = tokenOf(req, url, json);
    const bad = () => graphError(401, 190, 'Invalid OAuth access token - Cannot parse access token');
    if (objectId === options.pageId) return token === options.pageAccessToken ? messengerSend(json) : bad();
    if (objectId === options.phoneNumberId) return token === options.whatsappAccessToken ? whatsappSend(json) : bad();
    return graphError(400, 100, `Unsupported post request. Object with ID '${objectId}' does not exist, cannot be loaded due to missing permissions, or does not support this operation.`, {
      error_subcode: 33,
    });
  }

  function rollFault(): OneShotFault | undefined {
    const roll = random();
    let edge = 0;
    const hit = (rate: number | undefined) => roll < (edge += rate ?? 0);
    if (hit(faults.rateTimeout)) return { kind: 'timeout' };
    if (hit(faults.rate429)) return { kind: 'status', status: 429 };
    if (hit(faults.rate5xx)) return { kind: 'status', status: random() < 0.5 ? 500 : 503 };
    if (hit(faults.rateDropAfterAccept)) return { kind: 'drop-after-accept' };
    return undefined;
  }

  function faultAnswer(status: 429 | 500 | 503, isWhatsApp: boolean): Answer {
    if (status === 429) {
      return isWhatsApp
        ? graphError(429, 130429, '(#130429) Rate limit hit', { error_data: { messaging_product: 'whatsapp', details: 'Cloud API message throughput has been reached.' } })
        : graphError(429, 613, '(#613) Calls to this api have exceeded the rate limit.');
    }
    if (status === 503) return graphError(503, 2, 'Service temporarily unavailable', { is_transient: true });
    return graphError(500, 1, 'An unknown error has occurred.', { is_transient: true });
  }

  function send(res: ServerResponse, answer: Answer, headers: Record<string, string> = {}): void {
    res.writeHead(answer.status, { 'content-type': 'application/json; charset=UTF-8', 'x-fb-trace-id': fbtraceId(), ...headers });
    res.end(JSON.stringify(answer.json));
  }

  async function handleApi(req: IncomingMessage, res: ServerResponse, url: URL, raw: Buffer): Promise<void> {
    requests.push({ method: req.method ?? 'GET', path: url.pathname, atMs: nowMs() });
    const fault = oneShots.shift() ?? rollFault();
    const [low, high] = faults.latencyMs ?? [0, 0];
    await sleep(low + random() * (high - low) + (fault?.kind === 'latency' ? fault.ms : 0));
    if (closed) return;
    switch (fault?.kind) {
      case 'timeout':
        return; // Never answered; close() or the client's abort ends the socket.
      case 'drop-before-accept':
        req.socket.destroy();
        return;
      case 'status':
        return send(res, faultAnswer(fault.status, url.pathname.includes(`/${options.phoneNumberId}/`)), fault.status === 429 ? { 'retry-after': '1' } : {});
      case 'graph-error':
        return send(
          res,
          graphError(fault.status, fault.code, fault.message ?? `(#${fault.code}) injected error`, {
            ...(fault.subcode === undefined ? {} : { error_subcode: fault.subcode }),
            ...(fault.isTransient === undefined ? {} : { is_transient: fault.isTransient }),
          }),
        );
    }
    const answer = api(req, url, raw);
    if (answer.accepted) received.push(answer.accepted);
    if (fault?.kind === 'drop-after-accept') {
      req.socket.destroy();
      return;
    }
    send(res, answer);
  }

  // --- webhooks we send ---------------------------------------------------------------------------------

  async function postWebhook(args: { webhookUrl: string; body: string | Buffer; signature?: string | null }): Promise<WebhookResult> {
    const bytes = Buffer.isBuffer(args.body) ? args.body : Buffer.from(args.body, 'utf8');
    const signature = args.signature === undefined ? sign(options.appSecret, bytes) : args.signature;
    const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'facebookexternalua' };
    if (signature !== null) {
      headers['x-hub-signature-256'] = signature;
      // Meta still sends the legacy SHA-1 header beside the SHA-256 one.
      headers['x-hub-signature'] = 'sha1=' + createHmac('sha1', options.appSecret).update(bytes).digest('hex');
    }
    const controller = new AbortController();
    outgoing.add(controller);
    // Meta gives a webhook 20 seconds before counting it as failed.
    const timer = setTimeout(() => controller.abort(), 20_000);
    try {
      const response = await fetch(args.webhookUrl, { method: 'POST', headers, body: new Uint8Array(bytes), signal: controller.signal });
      return { status: response.status, body: await response.text(), rawBody: bytes.toString('utf8'), signature: signature ?? '' };
    } finally {
      clearTimeout(timer);
      outgoing.delete(controller);
    }
  }

  function messengerEvent(input: MessengerEventInput): { event: Record<string, unknown>; mid?: string; timestamp?: number } {
    switch (input.type) {
      case 'text': {
        const mid = input.mid ?? 'm_' + randomBytes(24).toString('base64url');
        const timestamp = input.timestamp === undefined ? nowMs() : ms(input.timestamp);
        const prior = lastInbound.get(`messenger:${input.psid}`) ?? 0;
        lastInbound.set(`messenger:${input.psid}`, Math.max(prior, timestamp));
        const message: Record<string, unknown> = { mid, text: input.text };
        if (input.attachments) message.attachments = input.attachments.map((a) => ({ type: a.type, payload: { url: a.url } }));
        return { event: { sender: { id: input.psid }, recipient: { id: options.pageId }, timestamp, message }, mid, timestamp };
      }
      case 'echo': {
        const mid = input.mid ?? 'm_' + randomBytes(24).toString('base64url');
        const timestamp = input.timestamp === undefined ? nowMs() : ms(input.timestamp);
        return { event: { sender: { id: options.pageId }, recipient: { id: input.psid }, timestamp, message: { is_echo: true, app_id: 1517776481860111, metadata: 'switchboard', mid, text: input.text } }, mid, timestamp };
      }
      case 'delivery': {
        const watermark = input.watermark === undefined ? nowMs() : ms(input.watermark);
        return { event: { sender: { id: input.psid }, recipient: { id: options.pageId }, delivery: { ...(input.mids ? { mids: input.mids } : {}), watermark } } };
      }
      case 'read': {
        const watermark = input.watermark === undefined ? nowMs() : ms(input.watermark);
        return { event: { sender: { id: input.psid }, recipient: { id: options.pageId }, timestamp: nowMs(), read: { watermark } } };
      }
      case 'raw':
        return { event: input.event };
    }
  }

  async function sendMessengerBatch(args: { webhookUrl: string; entries: MessengerEventInput[][] }): Promise<WebhookResult> {
    const payload = {
      object: 'page',
      entry: args.entries.map((events) => ({ id: options.pageId, time: nowMs(), messaging: events.map((e) => messengerEvent(e).event) })),
    };
    return postWebhook({ webhookUrl: args.webhookUrl, body: encodeMetaJson(payload) });
  }

  async function sendMessengerSingle(webhookUrl: string, input: MessengerEventInput) {
    const built = messengerEvent(input);
    const payload = { object: 'page', entry: [{ id: options.pageId, time: nowMs(), messaging: [built.event] }] };
    return { ...(await postWebhook({ webhookUrl, body: encodeMetaJson(payload) })), mid: built.mid ?? '', timestamp: built.timestamp ?? 0 };
  }

  const seconds = (value: Date | number | undefined) => String(Math.floor((value === undefined ? nowMs() : ms(value)) / 1000));

  function noteWhatsAppInbound(from: string, timestamp: Date | number | undefined): number {
    const at = timestamp === undefined ? nowMs() : ms(timestamp);
    const key = `whatsapp:${digitsOf(from)}`;
    lastInbound.set(key, Math.max(lastInbound.get(key) ?? 0, at));
    return at;
  }

  function whatsappEntry(events: WhatsAppEventInput[]): Record<string, unknown> {
    const metadata = { display_phone_number: options.displayPhoneNumber, phone_number_id: options.phoneNumberId };
    const messages: Record<string, unknown>[] = [];
    const contacts: Record<string, unknown>[] = [];
    const statuses: Record<string, unknown>[] = [];
    const changes: Record<string, unknown>[] = [];
    for (const event of events) {
      switch (event.type) {
        case 'text': {
          noteWhatsAppInbound(event.from, event.timestamp);
          const from = digitsOf(event.from);
          contacts.push({ profile: { name: event.name ?? 'Patient' }, wa_id: from });
          messages.push({ from, id: event.id ?? 'wamid.' + randomBytes(24).toString('base64url'), timestamp: seconds(event.timestamp), type: 'text', text: { body: event.text } });
          break;
        }
        case 'media': {
          noteWhatsAppInbound(event.from, event.timestamp);
          const from = digitsOf(event.from);
          contacts.push({ profile: { name: 'Patient' }, wa_id: from });
          messages.push({
            from,
            id: event.id ?? 'wamid.' + randomBytes(24).toString('base64url'),
            timestamp: seconds(event.timestamp),
            type: event.mediaType,
            [event.mediaType]: { id: event.mediaId, mime_type: event.mimeType, sha256: randomBytes(32).toString('base64'), ...(event.caption === undefined ? {} : { caption: event.caption }) },
          });
          break;
        }
        case 'status': {
          const recipient = event.recipient ?? digitsOf(received.find((r) => r.id === event.id)?.to ?? '16505551234');
          statuses.push({
            id: event.id,
            status: event.status,
            timestamp: seconds(event.timestamp),
            recipient_id: recipient,
            ...(event.status === 'failed'
              ? { errors: [{ code: event.errorCode ?? 131026, title: event.errorTitle ?? 'Message undeliverable', message: event.errorTitle ?? 'Message undeliverable', error_data: { details: event.errorTitle ?? 'Message undeliverable' } }] }
              : {
                  conversation: { id: randomBytes(16).toString('hex'), origin: { type: 'service' } },
                  pricing: { billable: false, pricing_model: 'PMP', category: 'service' },
                }),
          });
          break;
        }
        case 'raw-change':
          changes.push(event.change);
          break;
      }
    }
    if (messages.length > 0) changes.unshift({ field: 'messages', value: { messaging_product: 'whatsapp', metadata, contacts, messages } });
    if (statuses.length > 0) changes.push({ field: 'messages', value: { messaging_product: 'whatsapp', metadata, statuses } });
    return { id: options.wabaId, changes };
  }

  async function sendWhatsAppBatch(args: { webhookUrl: string; entries: WhatsAppEventInput[][] }): Promise<WebhookResult> {
    const payload = { object: 'whatsapp_business_account', entry: args.entries.map(whatsappEntry) };
    return postWebhook({ webhookUrl: args.webhookUrl, body: encodeMetaJson(payload) });
  }

  async function sendVerification(args: { webhookUrl: string; verifyToken: string; challenge?: string; mode?: string }) {
    const challenge = args.challenge ?? String(Math.floor(random() * 1e9));
    const url = new URL(args.webhookUrl);
    url.searchParams.set('hub.mode', args.mode ?? 'subscribe');
    url.searchParams.set('hub.verify_token', args.verifyToken);
    url.searchParams.set('hub.challenge', challenge);
    const response = await fetch(url, { signal: AbortSignal.timeout(20_000) });
    return { status: response.status, body: await response.text(), challenge };
  }

  const fake: FakeMeta = {
    get url() {
      return baseUrl;
    },
    options,
    received,
    requests,
    now: () => new Date(nowMs()),
    setClock(now) {
      frozenNowMs = now === null ? null : ms(now);
    },
    setLastInbound(apiName, user, at) {
      lastInbound.set(`${apiName}:${apiName === 'whatsapp' ? digitsOf(user) : user}`, ms(at));
    },
    setFaults(config) {
      faults = { ...config };
      random = config.seed === undefined ? Math.random : seededRandom(config.seed);
    },
    injectFault(fault) {
      oneShots.push(fault);
    },
    reset() {
      received.length = 0;
      requests.length = 0;
      oneShots.length = 0;
      lastInbound.clear();
      fake.setFaults({});
      frozenNowMs = null;
    },
    sendMessengerText: (args) => sendMessengerSingle(args.webhookUrl, { type: 'text', ...args }),
    sendMessengerEcho: (args) => sendMessengerSingle(args.webhookUrl, { type: 'echo', ...args }),
    sendMessengerDelivery: (args) => sendMessengerSingle(args.webhookUrl, { type: 'delivery', ...args }),
    sendMessengerRead: (args) => sendMessengerSingle(args.webhookUrl, { type: 'read', ...args }),
    sendMessengerBatch,
    async sendWhatsAppText(args) {
      const id = args.id ?? 'wamid.' + randomBytes(24).toString('base64url');
      const timestamp = args.timestamp === undefined ? nowMs() : ms(args.timestamp);
      const result = await sendWhatsAppBatch({ webhookUrl: args.webhookUrl, entries: [[{ type: 'text', from: args.from, text: args.text, id, timestamp }]] });
      return { ...result, id, timestamp };
    },
    sendWhatsAppStatus: (args) => sendWhatsAppBatch({ webhookUrl: args.webhookUrl, entries: [[{ type: 'status', ...args }]] }),
    sendWhatsAppBatch,
    postWebhook,
    sendVerification,
    async close() {
      closed = true;
      for (const controller of outgoing) controller.abort();
      for (const wake of [...sleepers]) wake();
      for (const socket of sockets) socket.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };

  // Control API over HTTP, for a fake running in another process (demo mode, `npm run simulate`).
  const webhookSenders: Record<string, (args: any) => Promise<unknown>> = {
    'messenger-text': fake.sendMessengerText,
    'messenger-echo': fake.sendMessengerEcho,
    'messenger-delivery': fake.sendMessengerDelivery,
    'messenger-read': fake.sendMessengerRead,
    'messenger-batch': fake.sendMessengerBatch,
    'whatsapp-text': fake.sendWhatsAppText,
    'whatsapp-status': fake.sendWhatsAppStatus,
    'whatsapp-batch': fake.sendWhatsAppBatch,
    verify: fake.sendVerification,
  };

  async function control(req: IncomingMessage, res: ServerResponse, url: URL, raw: Buffer): Promise<void> {
    const reply = (status: number, json: unknown) => send(res, { status, json });
    let body: any = {};
    try {
      body = raw.length === 0 ? {} : JSON.parse(raw.toString('utf8'));
    } catch {
      return reply(400, { error: 'body is not JSON' });
    }
    const route = `${req.method} ${url.pathname}`;
    if (route === 'GET /_fake/received') return reply(200, { received });
    if (route === 'GET /_fake/requests') return reply(200, { requests });
    switch (route) {
      case 'POST /_fake/faults':
        fake.setFaults(body);
        return reply(200, { ok: true });
      case 'POST /_fake/faults/once':
        fake.injectFault(body);
        return reply(200, { ok: true });
      case 'POST /_fake/clock':
        fake.setClock(body.now === null ? null : typeof body.now === 'number' ? body.now : Date.parse(body.now));
        return reply(200, { now: fake.now().toISOString() });
      case 'POST /_fake/last-inbound':
        fake.setLastInbound(body.api, body.user, typeof body.at === 'number' ? body.at : Date.parse(body.at));
        return reply(200, { ok: true });
      case 'POST /_fake/reset':
        fake.reset();
        return reply(200, { ok: true });
    }
    const webhook = /^POST \/_fake\/webhooks\/([a-z-]+)$/.exec(route);
    const sender = webhook ? webhookSenders[webhook[1]!] : undefined;
    if (sender) {
      try {
        return reply(200, await sender(body));
      } catch (error) {
        return reply(502, { error: error instanceof Error ? error.message : String(error) });
      }
    }
    return reply(404, { error: `no control route ${route}` });
  }

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', baseUrl);
      const raw = Buffer.concat(chunks);
      const handled = url.pathname.startsWith('/_fake/') ? control(req, res, url, raw) : handleApi(req, res, url, raw);
      handled.catch((error: unknown) => {
        if (!res.headersSent && !res.destroyed) send(res, graphError(500, 1, error instanceof Error ? error.message : String(error)));
      });
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('fake Meta has no port');
  const baseUrl = `http://127.0.0.1:${address.port}`;
  return fake;
}

// --- a receiver for tests: our side of the webhook, without the web layer -----------------------------------

export interface WebhookReceiver {
  readonly url: string;
  close(): Promise<void>;
}

export interface ReceivedWebhook {
  method: string;
  url: URL;
  request: WebhookRequest;
}

/**
 * A tiny node:http server standing in for our webhook route: `handle` returns the JSON to answer 200 with;
 * an error with a numeric `status` and `code` (our AppError) becomes that status and `{ code }`.
 */
export async function startWebhookReceiver(handle: (webhook: ReceivedWebhook) => unknown): Promise<WebhookReceiver> {
  const sockets = new Set<Socket>();
  let baseUrl = '';
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', baseUrl);
      let status = 200;
      let payload: unknown;
      try {
        payload = handle({ method: req.method ?? 'GET', url, request: { publicUrl: baseUrl + (req.url ?? '/'), headers: req.headers, rawBody: Buffer.concat(chunks) } });
      } catch (error) {
        const e = error as { status?: unknown; code?: unknown; message?: unknown };
        status = typeof e.status === 'number' ? e.status : 500;
        payload = { code: e.code, message: e.message };
      }
      const text = typeof payload === 'string' ? payload : JSON.stringify(payload ?? null);
      res.writeHead(status, { 'content-type': typeof payload === 'string' ? 'text/plain' : 'application/json' });
      res.end(text);
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('receiver has no port');
  baseUrl = `http://127.0.0.1:${address.port}`;
  return {
    url: baseUrl,
    async close() {
      for (const socket of sockets) socket.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
