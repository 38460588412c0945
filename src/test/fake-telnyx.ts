import { generateKeyPairSync, randomUUID, sign, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { z } from 'zod';
import { faultConfigSchema, oneShotFaultSchema, seededRandom, type FaultConfig, type OneShotFault } from './fake-twilio.ts';

/**
 * A loopback fake of Telnyx's Messaging API v2: a real HTTP server that the unmodified `telnyx` SDK talks to (its
 * `baseURL` option, `${url}/v2`), with Bearer auth, Telnyx's `{data}` / `{errors: [{code, title, detail}]}` shapes,
 * Detail Record Search for message detail records, opt-outs, injectable faults, and Ed25519-signed webhooks
 * (`telnyx-signature-ed25519` over `${telnyx-timestamp}|${body}`) sent to our URL.
 *
 * The control API and the programmatic interface have the same shape as fake-twilio.ts, so a shared adapter
 * contract suite can drive either:
 *   POST /_fake/faults (FaultConfig, replaces) · POST /_fake/faults/enqueue (OneShotFault) · DELETE /_fake/faults
 *   GET /_fake/received · POST /_fake/opt-out {phone} · POST /_fake/opt-in {phone}
 *   POST /_fake/auto-statuses {statuses: ['sent','delivered'], delayMs?}
 *   POST /_fake/inbound-sms {webhookUrl, from, to, body, mediaUrls?, messageSid?}
 *   POST /_fake/status-callback {messageSid, status, errorCode?, url?}
 * Statuses are Telnyx's: queued, sending, sent, delivered, sending_failed, delivery_failed, delivery_unconfirmed.
 */

export type FakeTelnyxStatus = 'queued' | 'sending' | 'sent' | 'delivered' | 'sending_failed' | 'delivery_failed' | 'delivery_unconfirmed';
const STATUSES = ['queued', 'sending', 'sent', 'delivered', 'sending_failed', 'delivery_failed', 'delivery_unconfirmed'] as const;
const FINAL = new Set<string>(['delivered', 'sending_failed', 'delivery_failed', 'delivery_unconfirmed']);
const E164 = /^\+[1-9]\d{6,14}$/;
const MAX_REQUEST_BYTES = 1024 * 1024;
const WEBHOOK_TIMEOUT_MS = 15_000;
const OPT_OUT_KEYWORDS = new Set(['STOP', 'STOPALL', 'UNSUBSCRIBE', 'CANCEL', 'END', 'QUIT']);
const OPT_IN_KEYWORDS = new Set(['START', 'UNSTOP', 'YES']);

export interface FakeTelnyxOptions {
  apiKey: string;
  host?: string;
  port?: number;
  autoStatuses?: FakeTelnyxStatus[];
  autoStatusDelayMs?: number;
}

/** A message the fake accepted, as it crossed the wire. */
export interface ReceivedTelnyxMessage {
  sid: string;
  to: string;
  from?: string;
  messagingProfileId?: string;
  body: string;
  mediaUrls: string[];
  webhookUrl?: string;
  /** The JSON body as sent. */
  json: Record<string, unknown>;
  receivedAtMs: number;
}

export interface FakeTelnyx {
  readonly url: string;
  /** The webhook public key, base64 of the raw 32 bytes, as Telnyx's portal shows it (TELNYX_PUBLIC_KEY). */
  readonly publicKey: string;
  readonly received: ReceivedTelnyxMessage[];
  close(): Promise<void>;
  setFaults(f: FaultConfig): void;
  enqueueFault(f: OneShotFault): void;
  optOut(phone: string): void;
  optIn(phone: string): void;
  setAutoStatuses(statuses: FakeTelnyxStatus[], delayMs?: number): void;
  /** Signs and POSTs a `message.received` event to `webhookUrl`; returns our answer. */
  /** `signatureUrl` is accepted for drop-in compatibility with the Twilio fake and ignored: Telnyx does not sign the URL. */
  sendInboundSms(args: { webhookUrl: string; signatureUrl?: string; from: string; to: string; body: string; mediaUrls?: string[]; messageSid?: string }): Promise<{ status: number; body: string; messageSid: string }>;
  /** Signs and POSTs `message.sent` / `message.finalized` for a message the fake accepted (to its webhook_url or `url`). */
  sendStatusCallback(args: { messageSid: string; status: string; errorCode?: string; url?: string; signatureUrl?: string }): Promise<{ status: number }>;
  /** Signs any body as this account would: for tests of our verifier. */
  signWebhook(body: string, timestampSeconds?: number): Record<string, string>;
}

/** telnyx-signature-ed25519: base64(Ed25519(privateKey, `${timestamp}|${body}`)). */
export function signTelnyxWebhook(privateKey: KeyObject, timestampSeconds: number, body: string): string {
  return sign(null, Buffer.from(`${timestampSeconds}|${body}`, 'utf8'), privateKey).toString('base64');
}

interface StoredMessage {
  id: string;
  direction: 'outbound' | 'inbound';
  from: string | null;
  to: string;
  messagingProfileId: string | null;
  text: string;
  mediaUrls: string[];
  status: string;
  errors: Array<{ code: string; title: string }>;
  createdAtMs: number;
  webhookUrl?: string;
}

interface TelnyxError {
  status: number;
  code: string;
  title: string;
  detail?: string;
}

const phoneSchema = z.strictObject({ phone: z.string().min(1) });
const autoStatusesSchema = z.strictObject({ statuses: z.array(z.enum(STATUSES)), delayMs: z.number().int().min(0).max(60_000).optional() });
const inboundSmsSchema = z.strictObject({
  webhookUrl: z.url(),
  signatureUrl: z.url().optional(),
  from: z.string().min(1),
  to: z.string().min(1),
  body: z.string(),
  mediaUrls: z.array(z.url()).max(10).optional(),
  messageSid: z.string().min(1).optional(),
});
const statusCallbackSchema = z.strictObject({ messageSid: z.string().min(1), status: z.string().min(1), errorCode: z.string().optional(), url: z.url().optional(), signatureUrl: z.url().optional() });
const sendSchema = z
  .object({
    to: z.string().optional(),
    from: z.string().optional(),
    messaging_profile_id: z.string().optional(),
    text: z.string().optional(),
    media_urls: z.array(z.string()).optional(),
    webhook_url: z.string().optional(),
    type: z.enum(['SMS', 'MMS']).optional(),
  })
  .loose();

class ControlInputError extends Error {}

function parseControl<T>(schema: z.ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value);
  if (!result.success) throw new ControlInputError(z.prettifyError(result.error));
  return result.data;
}

const nowMs = () => performance.timeOrigin + performance.now();
const iso = (ms: number) => new Date(ms).toISOString();

export async function startFakeTelnyx(options: FakeTelnyxOptions): Promise<FakeTelnyx> {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const publicKeyBase64 = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url').toString('base64');
  let autoStatuses: string[] = options.autoStatuses ?? [];
  let autoStatusDelayMs = options.autoStatusDelayMs ?? 0;
  const received: ReceivedTelnyxMessage[] = [];
  const messages: StoredMessage[] = [];
  const byId = new Map<string, StoredMessage>();
  const optedOut = new Set<string>();
  const oneShots: OneShotFault[] = [];
  let faults: FaultConfig = {};
  let random = Math.random;
  let closed = false;
  const sockets = new Set<Socket>();
  const sleepers = new Set<() => void>();
  const outgoing = new Set<AbortController>();

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

  function messageJson(m: StoredMessage): Record<string, unknown> {
    return {
      record_type: 'message',
      direction: m.direction,
      id: m.id,
      type: m.mediaUrls.length > 0 ? 'MMS' : 'SMS',
      messaging_profile_id: m.messagingProfileId,
      from: { phone_number: m.from, carrier: 'TELNYX LLC', line_type: 'VoIP' },
      to: [{ phone_number: m.to, status: m.status, carrier: 'T-MOBILE USA, INC.', line_type: 'Wireless' }],
      cc: [],
      text: m.text,
      media: m.mediaUrls.map((url) => ({ url, content_type: null, sha256: null, size: null })),
      webhook_url: m.webhookUrl ?? null,
      webhook_failover_url: null,
      encoding: 'GSM-7',
      parts: 1,
      tags: [],
      cost: null,
      received_at: iso(m.createdAtMs),
      sent_at: null,
      completed_at: FINAL.has(m.status) ? iso(Date.now()) : null,
      valid_until: null,
      errors: m.errors,
    };
  }

  function mdrJson(m: StoredMessage): Record<string, unknown> {
    return {
      record_type: 'message_detail_record',
      uuid: m.id,
      direction: m.direction,
      cld: m.to,
      cli: m.from,
      created_at: iso(m.createdAtMs),
      updated_at: iso(Date.now()),
      message_type: m.mediaUrls.length > 0 ? 'MMS' : 'SMS',
      status: m.status,
      parts: 1,
      profile_id: m.messagingProfileId,
      delivery_status_webhook_url: m.webhookUrl ?? null,
      errors: m.errors.map((e) => e.code),
    };
  }

  function sendJson(res: ServerResponse, status: number, json: unknown, headers: Record<string, string> = {}): void {
    if (res.destroyed || res.writableEnded) return;
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'x-request-id': randomUUID(), ...headers });
    res.end(JSON.stringify(json));
  }

  function sendError(res: ServerResponse, error: TelnyxError, headers: Record<string, string> = {}): void {
    sendJson(res, error.status, { errors: [{ code: error.code, title: error.title, ...(error.detail ? { detail: error.detail } : {}) }] }, headers);
  }

  const isAuthorized = (req: IncomingMessage) => req.headers.authorization === `Bearer ${options.apiKey}`;

  // --- POST /v2/messages --------------------------------------------------------------------------------------

  function validateSend(body: z.infer<typeof sendSchema>): TelnyxError | undefined {
    if (!body.to) return { status: 422, code: '10004', title: 'Missing required parameter', detail: "The 'to' parameter is required." };
    if (!body.from && !body.messaging_profile_id) return { status: 422, code: '10004', title: 'Missing required parameter', detail: "Either 'from' or 'messaging_profile_id' is required." };
    if (!body.text && (body.media_urls ?? []).length === 0) return { status: 422, code: '10004', title: 'Missing required parameter', detail: "'text' or 'media_urls' is required." };
    if (!E164.test(body.to)) return { status: 400, code: '10016', title: 'Phone number must be in +E.164 format', detail: `'${body.to}' is not +E.164.` };
    if (optedOut.has(body.to)) return { status: 400, code: '40300', title: 'Blocked due to STOP message', detail: `Messages cannot be sent from '${body.from ?? ''}' to '${body.to}' due to an existing block rule.` };
    return undefined;
  }

  function accept(body: z.infer<typeof sendSchema>, json: Record<string, unknown>): StoredMessage {
    const at = nowMs();
    const message: StoredMessage = {
      id: randomUUID(),
      direction: 'outbound',
      from: body.from ?? null,
      to: body.to!,
      messagingProfileId: body.messaging_profile_id ?? null,
      text: body.text ?? '',
      mediaUrls: body.media_urls ?? [],
      status: 'queued',
      errors: [],
      createdAtMs: at,
      ...(body.webhook_url ? { webhookUrl: body.webhook_url } : {}),
    };
    messages.push(message);
    byId.set(message.id, message);
    received.push({
      sid: message.id,
      to: message.to,
      ...(body.from ? { from: body.from } : {}),
      ...(body.messaging_profile_id ? { messagingProfileId: body.messaging_profile_id } : {}),
      body: message.text,
      mediaUrls: message.mediaUrls,
      ...(message.webhookUrl ? { webhookUrl: message.webhookUrl } : {}),
      json,
      receivedAtMs: at,
    });
    if (autoStatuses.length > 0) void reportAutoStatuses(message);
    return message;
  }

  async function reportAutoStatuses(message: StoredMessage): Promise<void> {
    for (const status of [...autoStatuses]) {
      await sleep(autoStatusDelayMs);
      if (closed) return;
      setStatus(message, status);
      if (!message.webhookUrl) continue;
      try {
        await postEvent(message.webhookUrl, statusEvent(message));
      } catch {
        // Our side being down must not stop the fake.
      }
    }
  }

  function defaultErrorCode(status: string): string | undefined {
    if (status === 'delivery_failed') return '40008';
    if (status === 'sending_failed') return '40002';
    return undefined;
  }

  function setStatus(message: StoredMessage, status: string, errorCode = defaultErrorCode(status)): void {
    message.status = status;
    message.errors = errorCode ? [{ code: errorCode, title: `Error ${errorCode}` }] : [];
  }

  function statusEvent(message: StoredMessage): { event_type: string; payload: Record<string, unknown> } {
    return { event_type: FINAL.has(message.status) ? 'message.finalized' : 'message.sent', payload: messageJson(message) };
  }

  function rollFault(): OneShotFault | undefined {
    const roll = random();
    let edge = 0;
    const hit = (r: number | undefined) => roll < (edge += r ?? 0);
    if (hit(faults.rateTimeout)) return { kind: 'timeout', ...(faults.timeoutHoldMs === undefined ? {} : { holdMs: faults.timeoutHoldMs }) };
    if (hit(faults.rate429)) return { kind: 'status', status: 429 };
    if (hit(faults.rate5xx)) return { kind: 'status', status: ([500, 502, 503] as const)[Math.floor(random() * 3)]! };
    if (hit(faults.rateDropBeforeAccept)) return { kind: 'drop-before-accept' };
    if (hit(faults.rateDropAfterAccept)) return { kind: 'drop-after-accept' };
    return undefined;
  }

  const STATUS_FAULTS: Record<429 | 500 | 502 | 503, TelnyxError> = {
    429: { status: 429, code: '10011', title: 'Too many requests', detail: 'You have exceeded the maximum number of allowed requests.' },
    500: { status: 500, code: '10007', title: 'Unexpected error' },
    502: { status: 502, code: '10007', title: 'Bad gateway' },
    503: { status: 503, code: '10007', title: 'Service unavailable' },
  };

  async function createMessage(req: IncomingMessage, res: ServerResponse, raw: string): Promise<void> {
    const fault = oneShots.shift() ?? rollFault();
    const [low, high] = faults.latencyMs ?? [0, 0];
    await sleep(low + random() * (high - low) + (fault?.kind === 'latency' ? fault.ms : 0));
    if (closed) return;
    switch (fault?.kind) {
      case 'timeout':
        if (fault.holdMs !== undefined) void sleep(fault.holdMs).then(() => req.socket.destroy());
        return;
      case 'drop-before-accept':
        req.socket.destroy();
        return;
      case 'status':
        return sendError(res, STATUS_FAULTS[fault.status], fault.status === 429 ? { 'retry-after': '1' } : {});
    }
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(raw) as Record<string, unknown>;
    } catch {
      return sendError(res, { status: 400, code: '10015', title: 'Bad Request', detail: 'The request body is not valid JSON.' });
    }
    const body = sendSchema.safeParse(json);
    if (!body.success) return sendError(res, { status: 422, code: '10015', title: 'Bad Request', detail: z.prettifyError(body.error) });
    const invalid = validateSend(body.data);
    if (invalid) return sendError(res, invalid);
    const message = accept(body.data, json);
    if (fault?.kind === 'drop-after-accept') {
      req.socket.destroy();
      return;
    }
    sendJson(res, 200, { data: messageJson(message) });
  }

  // --- GET /v2/detail_records -----------------------------------------------------------------------------------

  function searchDetailRecords(res: ServerResponse, url: URL): void {
    const q = url.searchParams;
    if (q.get('filter[record_type]') !== 'messaging') {
      return sendError(res, { status: 400, code: '10015', title: 'Bad Request', detail: 'filter[record_type] is required; this fake knows messaging only.' });
    }
    const filters: Array<(m: StoredMessage) => boolean> = [];
    const direction = q.get('filter[direction]');
    const cld = q.get('filter[cld]');
    const cli = q.get('filter[cli]');
    if (direction) filters.push((m) => m.direction === direction);
    if (cld) filters.push((m) => m.to === cld);
    if (cli) filters.push((m) => m.from === cli);
    for (const [key, test] of [
      ['filter[created_at][gte]', (at: number, bound: number) => at >= bound],
      ['filter[created_at][lt]', (at: number, bound: number) => at < bound],
    ] as const) {
      const value = q.get(key);
      if (value === null) continue;
      const bound = Date.parse(value);
      if (Number.isNaN(bound)) return sendError(res, { status: 400, code: '10015', title: 'Bad Request', detail: `${key} is not a date` });
      filters.push((m) => test(m.createdAtMs, bound));
    }
    const sort = q.get('sort') ?? '-created_at';
    const matching = messages.filter((m) => filters.every((f) => f(m))).sort((a, b) => (sort === 'created_at' ? a.createdAtMs - b.createdAtMs : b.createdAtMs - a.createdAtMs));
    const pageSize = Math.min(Math.max(Number(q.get('page[size]') ?? 20) || 20, 1), 250);
    const pageNumber = Math.max(Number(q.get('page[number]') ?? 1) || 1, 1);
    const items = matching.slice((pageNumber - 1) * pageSize, pageNumber * pageSize);
    sendJson(res, 200, {
      data: items.map(mdrJson),
      meta: { page_number: pageNumber, page_size: pageSize, total_pages: Math.max(1, Math.ceil(matching.length / pageSize)), total_results: matching.length },
    });
  }

  async function handleApi(req: IncomingMessage, res: ServerResponse, url: URL, raw: string): Promise<void> {
    const notFound = () => sendError(res, { status: 404, code: '10005', title: 'Resource not found', detail: `${url.pathname} was not found.` });
    if (!url.pathname.startsWith('/v2/')) return notFound();
    if (!isAuthorized(req)) return sendError(res, { status: 401, code: '10009', title: 'Authentication failed', detail: 'The required authentication headers were either invalid or not included in the request.' });
    const method = req.method ?? 'GET';
    if (url.pathname === '/v2/messages' && method === 'POST') return createMessage(req, res, raw);
    if (url.pathname === '/v2/detail_records' && method === 'GET') return searchDetailRecords(res, url);
    const one = /^\/v2\/messages\/([^/]+)$/.exec(url.pathname);
    if (one && method === 'GET') {
      const message = byId.get(one[1]!);
      return message ? sendJson(res, 200, { data: messageJson(message) }) : notFound();
    }
    return notFound();
  }

  // --- webhooks we send -----------------------------------------------------------------------------------------

  function signedHeaders(body: string, timestampSeconds = Math.floor(Date.now() / 1000)): Record<string, string> {
    return {
      'content-type': 'application/json',
      'user-agent': 'telnyx-webhooks',
      'telnyx-timestamp': String(timestampSeconds),
      'telnyx-signature-ed25519': signTelnyxWebhook(privateKey, timestampSeconds, body),
    };
  }

  async function postEvent(url: string, event: { event_type: string; payload: Record<string, unknown> }): Promise<{ status: number; body: string }> {
    const body = JSON.stringify({
      data: { record_type: 'event', id: randomUUID(), event_type: event.event_type, occurred_at: new Date().toISOString(), payload: event.payload },
      meta: { attempt: 1, delivered_to: url },
    });
    const controller = new AbortController();
    outgoing.add(controller);
    const timer = setTimeout(() => controller.abort(), WEBHOOK_TIMEOUT_MS);
    try {
      const response = await fetch(url, { method: 'POST', headers: signedHeaders(body), body, signal: controller.signal });
      return { status: response.status, body: await response.text() };
    } finally {
      clearTimeout(timer);
      outgoing.delete(controller);
    }
  }

  const fake: FakeTelnyx = {
    get url() {
      return baseUrl;
    },
    publicKey: publicKeyBase64,
    received,
    setFaults(config) {
      faults = parseControl(faultConfigSchema, config);
      random = faults.seed === undefined ? Math.random : seededRandom(faults.seed);
    },
    enqueueFault(fault) {
      oneShots.push(parseControl(oneShotFaultSchema, fault));
    },
    optOut(phone) {
      optedOut.add(phone);
    },
    optIn(phone) {
      optedOut.delete(phone);
    },
    setAutoStatuses(statuses, delayMs) {
      autoStatuses = [...statuses];
      if (delayMs !== undefined) autoStatusDelayMs = delayMs;
    },
    async sendInboundSms({ webhookUrl, from, to, body, mediaUrls = [], messageSid }) {
      const id = messageSid ?? randomUUID();
      const keyword = body.trim().toUpperCase();
      if (OPT_OUT_KEYWORDS.has(keyword)) optedOut.add(from);
      if (OPT_IN_KEYWORDS.has(keyword)) optedOut.delete(from);
      let message = byId.get(id);
      if (!message) {
        message = { id, direction: 'inbound', from, to, messagingProfileId: null, text: body, mediaUrls, status: 'delivered', errors: [], createdAtMs: nowMs() };
        messages.push(message);
        byId.set(id, message);
      }
      const payload = { ...messageJson(message), from: { phone_number: from, carrier: 'T-MOBILE USA, INC.', line_type: 'Wireless' }, to: [{ phone_number: to, status: 'webhook_delivered' }] };
      const answer = await postEvent(webhookUrl, { event_type: 'message.received', payload });
      return { ...answer, messageSid: id };
    },
    async sendStatusCallback({ messageSid, status, errorCode, url }) {
      const message = byId.get(messageSid);
      if (!message || message.direction !== 'outbound') throw new ControlInputError(`no outbound message ${messageSid}`);
      const target = url ?? message.webhookUrl;
      if (!target) throw new ControlInputError(`message ${messageSid} has no webhook_url and no url was given`);
      setStatus(message, status, errorCode ?? defaultErrorCode(status));
      const { status: answer } = await postEvent(target, statusEvent(message));
      return { status: answer };
    },
    signWebhook(body, timestampSeconds) {
      return signedHeaders(body, timestampSeconds);
    },
    async close() {
      closed = true;
      for (const controller of outgoing) controller.abort();
      for (const wake of [...sleepers]) wake();
      for (const socket of sockets) socket.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };

  // --- control API -----------------------------------------------------------------------------------------------

  async function control(req: IncomingMessage, res: ServerResponse, url: URL, raw: string): Promise<void> {
    const reply = (status: number, json: unknown) => sendJson(res, status, json);
    let body: unknown;
    try {
      body = raw.length === 0 ? {} : JSON.parse(raw);
    } catch {
      return reply(400, { error: 'body is not JSON' });
    }
    const route = `${req.method} ${url.pathname}`;
    try {
      switch (route) {
        case 'GET /_fake/received':
          return reply(200, received);
        case 'POST /_fake/faults':
          fake.setFaults(body as FaultConfig);
          return reply(200, { ok: true });
        case 'POST /_fake/faults/enqueue':
          fake.enqueueFault(body as OneShotFault);
          return reply(200, { ok: true });
        case 'DELETE /_fake/faults':
          fake.setFaults({});
          oneShots.length = 0;
          return reply(200, { ok: true });
        case 'POST /_fake/opt-out':
          fake.optOut(parseControl(phoneSchema, body).phone);
          return reply(200, { ok: true });
        case 'POST /_fake/opt-in':
          fake.optIn(parseControl(phoneSchema, body).phone);
          return reply(200, { ok: true });
        case 'POST /_fake/auto-statuses': {
          const args = parseControl(autoStatusesSchema, body);
          fake.setAutoStatuses(args.statuses, args.delayMs);
          return reply(200, { ok: true });
        }
        case 'POST /_fake/inbound-sms': {
          const args = parseControl(inboundSmsSchema, body);
          const result = await deliver(() => fake.sendInboundSms(args));
          return 'error' in result ? reply(502, result) : reply(result.status, result);
        }
        case 'POST /_fake/status-callback': {
          const args = parseControl(statusCallbackSchema, body);
          const result = await deliver(() => fake.sendStatusCallback(args));
          return 'error' in result ? reply(502, result) : reply(result.status, result);
        }
      }
    } catch (error) {
      if (error instanceof ControlInputError) return reply(400, { error: error.message });
      throw error;
    }
    return reply(404, { error: `no control route ${route}` });
  }

  async function deliver<T>(send: () => Promise<T>): Promise<T | { error: string }> {
    try {
      return await send();
    } catch (error) {
      if (error instanceof ControlInputError) throw error;
      return { error: `webhook delivery failed: ${error instanceof Error ? error.message : String(error)}` };
    }
  }

  // --- server -------------------------------------------------------------------------------------------------------

  const server = createServer((req, res) => {
    req.on('error', () => {});
    res.on('error', () => {});
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_REQUEST_BYTES) chunks.push(chunk);
    });
    req.on('end', () => {
      const url = new URL(req.url ?? '/', baseUrl);
      if (size > MAX_REQUEST_BYTES) return sendError(res, { status: 413, code: '10015', title: 'Request entity too large' });
      const raw = Buffer.concat(chunks).toString('utf8');
      const handled = url.pathname.startsWith('/_fake/') ? control(req, res, url, raw) : handleApi(req, res, url, raw);
      handled.catch((error: unknown) => sendError(res, { status: 500, code: '10007', title: 'Unexpected error', detail: error instanceof Error ? error.message : String(error) }));
    });
  });
  server.on('clientError', (_error, socket) => socket.destroy());
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('fake Telnyx has no port');
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const baseUrl = `http://${host}:${address.port}`;
  return fake;
}
