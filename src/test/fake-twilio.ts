import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { z } from 'zod';
import { createFakeTwilioVoice, type FakeTwilioVoice } from './fake-twilio-voice.ts';

/**
 * A loopback fake of Twilio's Programmable Messaging REST API (2010-04-01): a real HTTP server that the unmodified
 * twilio SDK talks to (via createTwilioClient's apiBase), with Basic auth, Twilio's JSON and error shapes, list
 * pagination, opt-outs, injectable faults, and signed webhooks sent to our URL. Signing is done here with
 * node:crypto, independently of twilio-node's validator, so each checks the other. Wire details:
 * ../shared/reference/providers.md §1–§4.
 *
 * Control API for a fake in another process (demo mode, `npm run simulate`), JSON in and out, no auth, 400 on bad input:
 *   POST /_fake/faults (FaultConfig, replaces) · POST /_fake/faults/enqueue (OneShotFault) · DELETE /_fake/faults (both cleared)
 *   GET /_fake/received · POST /_fake/opt-out {phone} · POST /_fake/opt-in {phone}
 *   POST /_fake/auto-statuses {statuses: ['sent','delivered'], delayMs?}
 *   POST /_fake/inbound-sms {webhookUrl, signatureUrl?, from, to, body, mediaUrls?, messageSid?}
 *   POST /_fake/status-callback {messageSid, status, errorCode?, url?, signatureUrl?}
 *   The last two answer with our webhook's HTTP status and `{status, body?, messageSid?}`; 502 if it was unreachable.
 */

const API_VERSION = '2010-04-01';
const MAX_BODY_CHARS = 1600;
const MAX_PAGE_SIZE = 1000;
const DEFAULT_PAGE_SIZE = 50;
const MAX_REQUEST_BYTES = 1024 * 1024;
// Twilio waits 15 s for a webhook answer before giving up on it.
const WEBHOOK_TIMEOUT_MS = 15_000;
const E164 = /^\+[1-9]\d{6,14}$/;
// Twilio's default keywords; only a message that is exactly one of them counts (providers.md §4).
const OPT_OUT_KEYWORDS = new Set(['STOP', 'STOPALL', 'UNSUBSCRIBE', 'END', 'QUIT', 'REVOKE', 'OPTOUT', 'CANCEL']);
const OPT_IN_KEYWORDS = new Set(['START', 'YES', 'UNSTOP']);

export type FakeTwilioStatus = 'queued' | 'sending' | 'sent' | 'delivered' | 'undelivered' | 'failed' | 'read';

/**
 * A fault for the next Messages.create request (FIFO; other requests are never faulted). It is applied after
 * authentication, so a request with wrong credentials does not use it up.
 * - `status`: answer with a Twilio error body and no message created (429 → code 20429, "never processed").
 * - `latency`: wait `ms`, then handle the request normally, even if the client gave up meanwhile (as a slow
 *   Twilio would still send it).
 * - `timeout`: create nothing and never answer; the socket stays open until the client gives up, `close()`
 *   runs, or `holdMs` passes (then it is destroyed).
 * - `drop-before-accept`: destroy the socket without creating the message.
 * - `drop-after-accept`: create and record the message (visible in `received`, fetch and list; status callbacks
 *   follow), then destroy the socket without answering: the case where the sender cannot know it was sent.
 */
export type OneShotFault =
  | { kind: 'status'; status: 429 | 500 | 502 | 503 }
  | { kind: 'latency'; ms: number }
  | { kind: 'timeout'; holdMs?: number }
  | { kind: 'drop-before-accept' }
  | { kind: 'drop-after-accept' };

/**
 * Random faults rolled by every Messages.create that has no one-shot fault queued. Rates are probabilities in
 * [0, 1] whose sum must not exceed 1; one roll picks at most one of timeout, 429, 5xx (500/502/503), drop-before
 * or drop-after. `latencyMs` adds a uniform delay to every create. `seed` makes the rolls repeatable.
 */
export interface FaultConfig {
  latencyMs?: [min: number, max: number];
  rate429?: number;
  rate5xx?: number;
  rateTimeout?: number;
  rateDropAfterAccept?: number;
  rateDropBeforeAccept?: number;
  /** How long a rolled timeout holds the socket before destroying it; unset holds until the client gives up. */
  timeoutHoldMs?: number;
  seed?: number;
}

export interface FakeTwilioOptions {
  accountSid: string;
  authToken: string;
  /** default 127.0.0.1 */
  host?: string;
  /** default 0: any free port */
  port?: number;
  /** statuses the fake reports via signed StatusCallback after accepting a message, in this order, e.g. ['sent','delivered']; default [] */
  autoStatuses?: FakeTwilioStatus[];
  /** delay before each callback */
  autoStatusDelayMs?: number;
}

/** A message the fake accepted (created), as it crossed the wire. */
export interface ReceivedMessage {
  sid: string;
  accountSid: string;
  to: string;
  from?: string;
  messagingServiceSid?: string;
  body: string;
  mediaUrls: string[];
  statusCallback?: string;
  /** The form as sent; repeated keys (MediaUrl) become arrays. */
  form: Record<string, string | string[]>;
  /** performance.timeOrigin + performance.now() */
  receivedAtMs: number;
}

export interface FakeTwilio {
  readonly url: string;
  /** every message the fake ACCEPTED (created), in acceptance order */
  readonly received: ReceivedMessage[];
  close(): Promise<void>;
  /** Replaces the random fault config; same effect as `POST /_fake/faults`. Throws on invalid config. */
  setFaults(f: FaultConfig): void;
  /** Queues a fault for the next Messages.create requests, FIFO; same as `POST /_fake/faults/enqueue`. */
  enqueueFault(f: OneShotFault): void;
  /** Later sends to `phone` fail with 400 / 21610 until optIn. Inbound STOP / START do the same, as on Twilio. */
  optOut(phone: string): void;
  optIn(phone: string): void;
  /** Changes the automatic status callbacks for messages accepted from now on; same as `POST /_fake/auto-statuses`. */
  setAutoStatuses(statuses: FakeTwilioStatus[], delayMs?: number): void;
  /** Sign (X-Twilio-Signature, exactly as Twilio does) and POST an inbound SMS webhook to `webhookUrl`; returns status + body text. The signature is computed over `signatureUrl ?? webhookUrl` (our app validates against its PUBLIC_BASE_URL + path which may differ from the loopback URL it is reached on). */
  sendInboundSms(args: { webhookUrl: string; signatureUrl?: string; from: string; to: string; body: string; mediaUrls?: string[]; messageSid?: string }): Promise<{ status: number; body: string; messageSid: string }>;
  /** Signed status callback for a message the fake accepted (to its StatusCallback URL, or an explicit url); also sets the message's stored status. Throws if the message is unknown or has no URL. */
  sendStatusCallback(args: { messageSid: string; status: string; errorCode?: string; url?: string; signatureUrl?: string }): Promise<{ status: number }>;
  /** Twilio Voice: Calls.create, recording media behind Basic auth with download faults, and playing calls against our webhooks. */
  readonly voice: FakeTwilioVoice;
}

/**
 * X-Twilio-Signature: base64(HMAC-SHA1(authToken, url + Σ sorted keys of key+value)); array values are
 * deduplicated and sorted, each appended as key+value (providers.md §2, twilio-node getExpectedTwilioSignature).
 */
export function signTwilioRequest(authToken: string, url: string, params: Record<string, string | string[]>): string {
  let data = url;
  for (const key of Object.keys(params).sort()) {
    const value = params[key]!;
    const values = Array.isArray(value) ? [...new Set(value)].sort() : [value];
    for (const v of values) data += key + v;
  }
  return createHmac('sha1', authToken).update(Buffer.from(data, 'utf8')).digest('base64');
}

// --- control input ------------------------------------------------------------------------------------------

const rate = z.number().min(0).max(1).optional();
export const faultConfigSchema = z
  .strictObject({
    latencyMs: z
      .tuple([z.number().min(0), z.number().min(0)])
      .refine(([min, max]) => min <= max, 'latencyMs must be [min, max] with min <= max')
      .optional(),
    rate429: rate,
    rate5xx: rate,
    rateTimeout: rate,
    rateDropAfterAccept: rate,
    rateDropBeforeAccept: rate,
    timeoutHoldMs: z.number().min(0).optional(),
    seed: z.number().int().optional(),
  })
  .refine(
    (c) => (c.rate429 ?? 0) + (c.rate5xx ?? 0) + (c.rateTimeout ?? 0) + (c.rateDropAfterAccept ?? 0) + (c.rateDropBeforeAccept ?? 0) <= 1,
    'fault rates must sum to at most 1',
  ) satisfies z.ZodType<FaultConfig>;

export const oneShotFaultSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('status'), status: z.union([z.literal(429), z.literal(500), z.literal(502), z.literal(503)]) }),
  z.strictObject({ kind: z.literal('latency'), ms: z.number().min(0) }),
  z.strictObject({ kind: z.literal('timeout'), holdMs: z.number().min(0).optional() }),
  z.strictObject({ kind: z.literal('drop-before-accept') }),
  z.strictObject({ kind: z.literal('drop-after-accept') }),
]) satisfies z.ZodType<OneShotFault>;

const phoneSchema = z.strictObject({ phone: z.string().min(1) });
const autoStatusesSchema = z.strictObject({
  statuses: z.array(z.enum(['queued', 'sending', 'sent', 'delivered', 'undelivered', 'failed', 'read'])),
  delayMs: z.number().int().min(0).max(60_000).optional(),
});
const inboundSmsSchema = z.strictObject({
  webhookUrl: z.url(),
  signatureUrl: z.url().optional(),
  from: z.string().min(1),
  to: z.string().min(1),
  body: z.string(),
  mediaUrls: z.array(z.url()).max(10).optional(),
  messageSid: z.string().min(1).optional(),
});
const statusCallbackSchema = z.strictObject({
  messageSid: z.string().min(1),
  status: z.string().min(1),
  errorCode: z.string().optional(),
  url: z.url().optional(),
  signatureUrl: z.url().optional(),
});

class ControlInputError extends Error {}

function parseControl<T>(schema: z.ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value);
  if (!result.success) throw new ControlInputError(z.prettifyError(result.error));
  return result.data;
}

// --- helpers --------------------------------------------------------------------------------------------------

interface StoredMessage {
  sid: string;
  direction: 'outbound-api' | 'inbound';
  from: string | null;
  to: string;
  messagingServiceSid: string | null;
  body: string;
  numMedia: number;
  status: string;
  errorCode: number | null;
  dateCreatedMs: number;
  dateUpdatedMs: number;
  dateSentMs: number;
  statusCallback?: string;
}

interface TwilioError {
  status: number;
  code: number;
  message: string;
}

/** mulberry32: small, seedable, good enough to pick faults. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const nowMs = () => performance.timeOrigin + performance.now();
const newSid = (prefix: string) => prefix + randomBytes(16).toString('hex');
// Twilio's dates look like "Thu, 01 Jan 2026 12:00:00 +0000" (twilio-node parses exactly that shape).
const rfc2822 = (ms: number) => new Date(ms).toUTCString().replace('GMT', '+0000');

const GSM_BASIC = new Set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà");
const GSM_EXTENDED = new Set('\f^{}\\[~]|€');

/** Segments as carriers count them: GSM-7 160/153 septets, otherwise UCS-2 70/67 code units. */
function countSegments(body: string): number {
  const chars = [...body];
  if (chars.every((c) => GSM_BASIC.has(c) || GSM_EXTENDED.has(c))) {
    const septets = chars.reduce((n, c) => n + (GSM_EXTENDED.has(c) ? 2 : 1), 0);
    return septets <= 160 ? 1 : Math.ceil(septets / 153);
  }
  return body.length <= 70 ? 1 : Math.ceil(body.length / 67);
}

function parseForm(raw: string): Record<string, string | string[]> {
  const form: Record<string, string | string[]> = {};
  for (const [key, value] of new URLSearchParams(raw)) {
    const existing = form[key];
    if (existing === undefined) form[key] = value;
    else form[key] = Array.isArray(existing) ? [...existing, value] : [existing, value];
  }
  return form;
}

const first = (value: string | string[] | undefined) => (Array.isArray(value) ? value[0] : value);
const all = (value: string | string[] | undefined) => (value === undefined ? [] : Array.isArray(value) ? value : [value]);

const MEDIA_TYPES: Record<string, string> = {
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  png: 'image/png',
  gif: 'image/gif',
  pdf: 'application/pdf',
  mp4: 'video/mp4',
  vcf: 'text/vcard',
};
const mediaContentType = (url: string) => MEDIA_TYPES[/\.([a-z0-9]+)(?:$|\?)/i.exec(url)?.[1]?.toLowerCase() ?? ''] ?? 'image/jpeg';

/** A DateSent filter value as a [from, to) range of whole seconds: a date-only value covers its UTC day. */
function dateRange(value: string): [number, number] | undefined {
  if (/^\d{4}-\d{2}-\d{2}$/.test(value)) {
    const start = Date.parse(`${value}T00:00:00Z`);
    return Number.isNaN(start) ? undefined : [start, start + 86_400_000];
  }
  const at = Date.parse(value);
  if (Number.isNaN(at)) return undefined;
  const second = Math.floor(at / 1000) * 1000;
  return [second, second + 1000];
}

// --- the fake ---------------------------------------------------------------------------------------------------

export async function startFakeTwilio(options: FakeTwilioOptions): Promise<FakeTwilio> {
  const { accountSid, authToken } = options;
  let autoStatuses = options.autoStatuses ?? [];
  let autoStatusDelayMs = options.autoStatusDelayMs ?? 0;
  const accountPath = `/${API_VERSION}/Accounts/${accountSid}`;
  const received: ReceivedMessage[] = [];
  const messages: StoredMessage[] = [];
  const bySid = new Map<string, StoredMessage>();
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
    const uri = `${accountPath}/Messages/${m.sid}.json`;
    return {
      account_sid: accountSid,
      api_version: API_VERSION,
      body: m.body,
      date_created: rfc2822(m.dateCreatedMs),
      date_sent: rfc2822(m.dateSentMs),
      date_updated: rfc2822(m.dateUpdatedMs),
      direction: m.direction,
      error_code: m.errorCode,
      error_message: m.errorCode === null ? null : `Error ${m.errorCode}`,
      from: m.from,
      messaging_service_sid: m.messagingServiceSid,
      num_media: String(m.numMedia),
      num_segments: String(countSegments(m.body)),
      price: null,
      price_unit: 'USD',
      sid: m.sid,
      status: m.status,
      subresource_uris: { media: `${accountPath}/Messages/${m.sid}/Media.json`, feedback: `${accountPath}/Messages/${m.sid}/Feedback.json` },
      to: m.to,
      uri,
    };
  }

  function twilioError(status: number, code: number, message: string): TwilioError {
    return { status, code, message };
  }

  function sendJson(res: ServerResponse, status: number, json: unknown, headers: Record<string, string> = {}): void {
    if (res.destroyed || res.writableEnded) return;
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'twilio-request-id': newSid('RQ'), ...headers });
    res.end(JSON.stringify(json));
  }

  function sendError(res: ServerResponse, error: TwilioError): void {
    const headers: Record<string, string> = error.status === 401 ? { 'www-authenticate': 'Basic realm="Twilio API"' } : {};
    sendJson(res, error.status, { code: error.code, message: error.message, more_info: `https://www.twilio.com/docs/errors/${error.code}`, status: error.status }, headers);
  }

  function isAuthorized(req: IncomingMessage): boolean {
    const header = req.headers.authorization ?? '';
    if (!header.startsWith('Basic ')) return false;
    const decoded = Buffer.from(header.slice('Basic '.length), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    return colon > 0 && decoded.slice(0, colon) === accountSid && decoded.slice(colon + 1) === authToken;
  }

  // --- Messages.create -----------------------------------------------------------------------------------------

  function validateCreate(form: Record<string, string | string[]>): TwilioError | undefined {
    const to = first(form.To);
    const from = first(form.From);
    const messagingServiceSid = first(form.MessagingServiceSid);
    const body = first(form.Body) ?? '';
    if (!to) return twilioError(400, 21604, "A 'To' phone number is required.");
    if (!from && !messagingServiceSid) return twilioError(400, 21603, "A 'From' phone number is required.");
    if (body === '' && all(form.MediaUrl).length === 0) return twilioError(400, 21619, 'A text message body or media urls must be specified.');
    if (!E164.test(to)) return twilioError(400, 21211, `The 'To' number ${to} is not a valid phone number.`);
    if ([...body].length > MAX_BODY_CHARS) return twilioError(400, 21617, `The concatenated message body exceeds the ${MAX_BODY_CHARS} character limit.`);
    if (optedOut.has(to)) return twilioError(400, 21610, 'Attempt to send to unsubscribed recipient');
    return undefined;
  }

  function accept(form: Record<string, string | string[]>): StoredMessage {
    const at = nowMs();
    const from = first(form.From);
    const messagingServiceSid = first(form.MessagingServiceSid);
    const mediaUrls = all(form.MediaUrl);
    const message: StoredMessage = {
      sid: newSid('SM'),
      direction: 'outbound-api',
      from: from ?? null,
      to: first(form.To)!,
      messagingServiceSid: messagingServiceSid ?? null,
      body: first(form.Body) ?? '',
      numMedia: mediaUrls.length,
      // A Messaging Service first "accepts" and picks a sender; a plain From is queued straight away.
      status: messagingServiceSid ? 'accepted' : 'queued',
      errorCode: null,
      dateCreatedMs: at,
      dateUpdatedMs: at,
      // Twilio sets date_sent once the message leaves; the fake "sends" at once so DateSent filters see it.
      dateSentMs: at,
      statusCallback: first(form.StatusCallback),
    };
    messages.push(message);
    bySid.set(message.sid, message);
    received.push({
      sid: message.sid,
      accountSid,
      to: message.to,
      ...(from === undefined ? {} : { from }),
      ...(messagingServiceSid === undefined ? {} : { messagingServiceSid }),
      body: message.body,
      mediaUrls,
      ...(message.statusCallback === undefined ? {} : { statusCallback: message.statusCallback }),
      form,
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
      if (!message.statusCallback) continue;
      try {
        await postForm(message.statusCallback, undefined, statusForm(message, status));
      } catch {
        // Our side being down must not stop the fake; Twilio too just drops a failed callback.
      }
    }
  }

  function defaultErrorCode(status: string): string | undefined {
    if (status === 'undelivered') return '30003';
    if (status === 'failed') return '30008';
    return undefined;
  }

  function setStatus(message: StoredMessage, status: string, errorCode = defaultErrorCode(status)): void {
    message.status = status;
    message.errorCode = errorCode === undefined ? null : Number(errorCode);
    message.dateUpdatedMs = nowMs();
  }

  function statusForm(message: StoredMessage, status: string, errorCode = defaultErrorCode(status)): Record<string, string> {
    const form: Record<string, string> = {
      MessageSid: message.sid,
      SmsSid: message.sid,
      MessageStatus: status,
      SmsStatus: status,
      AccountSid: accountSid,
      To: message.to,
      ApiVersion: API_VERSION,
    };
    if (message.from) form.From = message.from;
    if (message.messagingServiceSid) form.MessagingServiceSid = message.messagingServiceSid;
    if ((status === 'failed' || status === 'undelivered') && errorCode) form.ErrorCode = errorCode;
    return form;
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

  const STATUS_FAULTS: Record<429 | 500 | 502 | 503, TwilioError> = {
    429: twilioError(429, 20429, 'Too Many Requests'),
    500: twilioError(500, 20500, 'Internal Server Error'),
    502: twilioError(502, 20500, 'Bad Gateway'),
    503: twilioError(503, 20503, 'Service Unavailable'),
  };

  async function createMessage(req: IncomingMessage, res: ServerResponse, raw: string): Promise<void> {
    const fault = oneShots.shift() ?? rollFault();
    const [low, high] = faults.latencyMs ?? [0, 0];
    await sleep(low + random() * (high - low) + (fault?.kind === 'latency' ? fault.ms : 0));
    if (closed) return;
    switch (fault?.kind) {
      case 'timeout':
        // Never answered: the client's timeout, close() or holdMs ends the socket.
        if (fault.holdMs !== undefined) void sleep(fault.holdMs).then(() => req.socket.destroy());
        return;
      case 'drop-before-accept':
        req.socket.destroy();
        return;
      case 'status':
        return sendError(res, STATUS_FAULTS[fault.status]);
    }
    const form = parseForm(raw);
    const invalid = validateCreate(form);
    if (invalid) return sendError(res, invalid);
    const message = accept(form);
    if (fault?.kind === 'drop-after-accept') {
      req.socket.destroy();
      return;
    }
    sendJson(res, 201, messageJson(message));
  }

  // --- Messages.list -------------------------------------------------------------------------------------------

  function listMessages(res: ServerResponse, url: URL): void {
    const query = url.searchParams;
    const pageSize = Math.min(Math.max(Number(query.get('PageSize') ?? DEFAULT_PAGE_SIZE) || DEFAULT_PAGE_SIZE, 1), MAX_PAGE_SIZE);
    const page = Math.max(Number(query.get('Page') ?? 0) || 0, 0);
    const filters: Array<(m: StoredMessage) => boolean> = [];
    const to = query.get('To');
    const from = query.get('From');
    if (to !== null) filters.push((m) => m.to === to);
    if (from !== null) filters.push((m) => m.from === from);
    for (const [key, test] of [
      ['DateSent', (sent: number, [lo, hi]: [number, number]) => sent >= lo && sent < hi],
      // Twilio documents both as inclusive: "on and after" / "on and before".
      ['DateSent>', (sent: number, [lo]: [number, number]) => sent >= lo],
      ['DateSent<', (sent: number, [, hi]: [number, number]) => sent < hi],
    ] as const) {
      const value = query.get(key);
      if (value === null) continue;
      const range = dateRange(value);
      if (!range) return sendError(res, twilioError(400, 20001, `Invalid ${key} value: ${value}`));
      // date_sent has whole-second precision on the wire.
      filters.push((m) => test(Math.floor(m.dateSentMs / 1000) * 1000, range));
    }
    const matching = messages.filter((m) => filters.every((f) => f(m))).reverse();

    // PageToken "PA<sid>" = the page after that message, "PB<sid>" = the page before it, as Twilio's tokens do.
    const token = query.get('PageToken');
    let items: StoredMessage[];
    if (token && /^P[AB]/.test(token)) {
      const index = matching.findIndex((m) => m.sid === token.slice(2));
      if (index === -1) items = [];
      else if (token.startsWith('PA')) items = matching.slice(index + 1, index + 1 + pageSize);
      else items = matching.slice(Math.max(0, index - pageSize), index);
    } else {
      items = matching.slice(page * pageSize, (page + 1) * pageSize);
    }

    const base = new URLSearchParams();
    for (const key of ['To', 'From', 'DateSent', 'DateSent<', 'DateSent>']) {
      const value = query.get(key);
      if (value !== null) base.set(key, value);
    }
    base.set('PageSize', String(pageSize));
    const pageUri = (pageNumber: number, pageToken?: string) => {
      const params = new URLSearchParams(base);
      params.set('Page', String(pageNumber));
      if (pageToken) params.set('PageToken', pageToken);
      return `${url.pathname}?${params}`;
    };
    const last = items.at(-1);
    const firstItem = items[0];
    const hasNext = last !== undefined && matching.indexOf(last) < matching.length - 1;
    const hasPrevious = firstItem !== undefined && matching.indexOf(firstItem) > 0;
    const start = page * pageSize;
    sendJson(res, 200, {
      end: items.length === 0 ? start : start + items.length - 1,
      first_page_uri: pageUri(0),
      messages: items.map(messageJson),
      next_page_uri: hasNext ? pageUri(page + 1, `PA${last.sid}`) : null,
      page,
      page_size: pageSize,
      previous_page_uri: hasPrevious && page > 0 ? pageUri(page - 1, `PB${firstItem.sid}`) : null,
      start,
      uri: `${url.pathname}${url.search}`,
    });
  }

  // --- REST routing --------------------------------------------------------------------------------------------

  async function handleApi(req: IncomingMessage, res: ServerResponse, url: URL, raw: string): Promise<void> {
    if (await voiceApi.handle(req, res, url, raw)) return;
    const notFound = () => sendError(res, twilioError(404, 20404, `The requested resource ${url.pathname} was not found`));
    const match = /^\/2010-04-01\/Accounts\/([^/]+)\/Messages(?:\/([^/]+))?\.json$/.exec(url.pathname);
    if (!match) return notFound();
    if (!isAuthorized(req)) return sendError(res, twilioError(401, 20003, 'Authenticate'));
    if (match[1] !== accountSid) return notFound();
    const sid = match[2];
    const method = req.method ?? 'GET';
    if (sid === undefined && method === 'POST') return createMessage(req, res, raw);
    if (sid === undefined && method === 'GET') return listMessages(res, url);
    if (sid !== undefined && method === 'GET') {
      const message = bySid.get(sid);
      return message ? sendJson(res, 200, messageJson(message)) : notFound();
    }
    return sendError(res, twilioError(405, 20004, 'Method not allowed'));
  }

  // --- webhooks we send -----------------------------------------------------------------------------------------

  async function postForm(url: string, signatureUrl: string | undefined, form: Record<string, string>): Promise<{ status: number; body: string }> {
    const controller = new AbortController();
    outgoing.add(controller);
    const timer = setTimeout(() => controller.abort(), WEBHOOK_TIMEOUT_MS);
    try {
      const response = await fetch(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          'user-agent': 'TwilioProxy/1.1',
          'i-twilio-idempotency-token': randomUUID(),
          'x-twilio-signature': signTwilioRequest(authToken, signatureUrl ?? url, form),
        },
        body: new URLSearchParams(form).toString(),
        signal: controller.signal,
      });
      return { status: response.status, body: await response.text() };
    } finally {
      clearTimeout(timer);
      outgoing.delete(controller);
    }
  }

  const voiceApi = createFakeTwilioVoice({ accountSid, apiVersion: API_VERSION, baseUrl: () => baseUrl, postForm, sendJson, sendError, isAuthorized, parseForm });

  const fake: FakeTwilio = {
    get url() {
      return baseUrl;
    },
    received,
    voice: voiceApi.voice,
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
    async sendInboundSms({ webhookUrl, signatureUrl, from, to, body, mediaUrls = [], messageSid }) {
      const sid = messageSid ?? newSid(mediaUrls.length > 0 ? 'MM' : 'SM');
      const country = (phone: string) => (phone.startsWith('+1') ? 'US' : '');
      const form: Record<string, string> = {
        ToCountry: country(to),
        ToState: '',
        SmsMessageSid: sid,
        NumMedia: String(mediaUrls.length),
        ToCity: '',
        FromZip: '',
        SmsSid: sid,
        FromState: '',
        SmsStatus: 'received',
        FromCity: '',
        Body: body,
        FromCountry: country(from),
        To: to,
        ToZip: '',
        NumSegments: String(countSegments(body)),
        MessageSid: sid,
        AccountSid: accountSid,
        From: from,
        ApiVersion: API_VERSION,
      };
      mediaUrls.forEach((mediaUrl, i) => {
        form[`MediaUrl${i}`] = mediaUrl;
        form[`MediaContentType${i}`] = mediaContentType(mediaUrl);
      });
      const keyword = body.trim().toUpperCase();
      if (OPT_OUT_KEYWORDS.has(keyword)) optedOut.add(from);
      if (OPT_IN_KEYWORDS.has(keyword)) optedOut.delete(from);
      if (!bySid.has(sid)) {
        const at = nowMs();
        const message: StoredMessage = {
          sid,
          direction: 'inbound',
          from,
          to,
          messagingServiceSid: null,
          body,
          numMedia: mediaUrls.length,
          status: 'received',
          errorCode: null,
          dateCreatedMs: at,
          dateUpdatedMs: at,
          dateSentMs: at,
        };
        messages.push(message);
        bySid.set(sid, message);
      }
      const answer = await postForm(webhookUrl, signatureUrl, form);
      return { ...answer, messageSid: sid };
    },
    async sendStatusCallback({ messageSid, status, errorCode, url, signatureUrl }) {
      const message = bySid.get(messageSid);
      if (!message || message.direction !== 'outbound-api') throw new ControlInputError(`no outbound message ${messageSid}`);
      const target = url ?? message.statusCallback;
      if (!target) throw new ControlInputError(`message ${messageSid} has no StatusCallback and no url was given`);
      setStatus(message, status, errorCode ?? defaultErrorCode(status));
      const { status: answer } = await postForm(target, signatureUrl, statusForm(message, status, errorCode ?? defaultErrorCode(status)));
      return { status: answer };
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
    const voiceControl = await voiceApi.control(route, body);
    if (voiceControl) return reply(voiceControl.status, voiceControl.json);
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
        case 'POST /_fake/auto-statuses': {
          const args = parseControl(autoStatusesSchema, body);
          fake.setAutoStatuses(args.statuses, args.delayMs);
          return reply(200, { ok: true });
        }
        case 'POST /_fake/opt-in':
          fake.optIn(parseControl(phoneSchema, body).phone);
          return reply(200, { ok: true });
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

  /** Our webhook being unreachable is an answer (502), not bad control input. */
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
    // A client that hangs up mid-request must never take the fake down.
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
      if (size > MAX_REQUEST_BYTES) return sendError(res, twilioError(413, 20001, 'Request entity too large'));
      const raw = Buffer.concat(chunks).toString('utf8');
      const handled = url.pathname.startsWith('/_fake/') ? control(req, res, url, raw) : handleApi(req, res, url, raw);
      handled.catch((error: unknown) => sendError(res, twilioError(500, 20500, error instanceof Error ? error.message : String(error))));
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
  if (!address || typeof address === 'string') throw new Error('fake Twilio has no port');
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const baseUrl = `http://${host}:${address.port}`;
  return fake;
}
