import { z } from 'zod';
import { BadRequestError, ProviderError } from '../errors.ts';
import type { ChannelEvent, DeliveryStatus, InboundMessage, MediaRef, OutboundMessage } from '../core/types.ts';
import type { ChannelAdapter, WebhookRequest } from './channel.ts';
import { parseMetaJson, verifyMetaSignature, verifySubscription, type SubscriptionVerifier } from './meta-signature.ts';

/*
 * Why fetch and not an SDK: Meta publishes no maintained Node SDK for the Messenger Send API or the WhatsApp
 * Cloud API messages endpoint (facebook-nodejs-business-sdk covers the Marketing API). Each send is one JSON
 * POST, so a community wrapper would add a dependency and hide the timeout and error classification we need.
 * `fetch` with an AbortSignal gives both, and `graphApiBase` points it at the loopback fake in tests and demo mode.
 * The Graph helpers below are shared with whatsapp.ts.
 */

export const DEFAULT_GRAPH_API_BASE = 'https://graph.facebook.com';
export const DEFAULT_GRAPH_API_VERSION = 'v21.0';

const HOUR_MS = 3_600_000;
/** RESPONSE / UPDATE may be sent up to 24 h after the person's last message. */
export const STANDARD_WINDOW_MS = 24 * HOUR_MS;
/** MESSAGE_TAG + HUMAN_AGENT: a human's reply up to 7 days after the person's last message. */
export const HUMAN_AGENT_WINDOW_MS = 7 * 24 * HOUR_MS;

// Graph throttling codes: 4 app, 17 user, 32 page, 613 custom rate limit (Graph API "Handling Errors");
// WhatsApp Cloud: 130429 throughput, 131048 spam rate, 131056 pair rate, 80007 WABA rate limit.
const RATE_LIMIT_CODES = new Set([4, 17, 32, 613, 130429, 131048, 131056, 80007]);
// The person cannot be reached, whatever we send: 551 "This person isn't available right now" (Messenger),
// 131026 "Message undeliverable" (WhatsApp: not on WhatsApp, old app, …); subcode 2018001 "No matching user found".
const UNREACHABLE_CODES = new Set([551, 131026]);
const UNREACHABLE_SUBCODES = new Set([2018001]);
// Connection failures where the request never reached Meta, so resending cannot duplicate.
const NEVER_CONNECTED = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

interface GraphErrorBody {
  message?: unknown;
  type?: unknown;
  code?: unknown;
  error_subcode?: unknown;
  fbtrace_id?: unknown;
  is_transient?: unknown;
  error_data?: { details?: unknown } | null;
}

/** The window closed at Meta's end, whatever our own clock said: the same outcome as our pre-check. */
function isWindowClosed(code: number | undefined, subcode: number | undefined): boolean {
  return (code === 10 && subcode === 2018278) || code === 131047;
}

/**
 * Classifies a non-2xx Graph API answer: 429 and throttling codes → retryable, not sent; 5xx → retryable,
 * outcome unknown; a rejected token (190) → retryable, not sent, as twilio-sms.ts does, so a bad credential
 * waits for an operator instead of failing every message; a closed messaging window (10/2018278, 131047) →
 * permanent `outside_window`; any other 4xx → permanent with the Graph error code (e.g. `551`, `100`).
 */
export function classifyGraphError(httpStatus: number, body: unknown, retryAfter?: string | null): ProviderError {
  const error = ((body as { error?: GraphErrorBody } | null)?.error ?? {}) as GraphErrorBody;
  const code = typeof error.code === 'number' ? error.code : undefined;
  const subcode = typeof error.error_subcode === 'number' ? error.error_subcode : undefined;
  const label = code === undefined ? `HTTP ${httpStatus}` : `Graph error ${code}${subcode === undefined ? '' : `/${subcode}`}`;
  const detail = typeof error.error_data?.details === 'string' ? ` (${error.error_data.details})` : '';
  const trace = typeof error.fbtrace_id === 'string' ? ` [fbtrace_id ${error.fbtrace_id}]` : '';
  const message = `${label}: ${typeof error.message === 'string' ? error.message : 'no error message'}${detail}${trace}`;
  const codeText = String(code ?? httpStatus);
  const retryAfterSeconds = retryAfter ? Number(retryAfter) : NaN;
  const retryAfterMs = Number.isFinite(retryAfterSeconds) && retryAfterSeconds >= 0 ? retryAfterSeconds * 1000 : undefined;

  if (httpStatus === 429 || (code !== undefined && RATE_LIMIT_CODES.has(code))) {
    return new ProviderError(message, { retryable: true, outcome: 'not-sent', code: codeText, httpStatus, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) });
  }
  if (httpStatus >= 500) return new ProviderError(message, { retryable: true, outcome: 'unknown', code: codeText, httpStatus });
  if (code === 190 || httpStatus === 401) return new ProviderError(message, { retryable: true, outcome: 'not-sent', code: codeText, httpStatus });
  if (isWindowClosed(code, subcode)) return new ProviderError(message, { retryable: false, outcome: 'not-sent', code: 'outside_window', httpStatus, identity: 'not_now' });
  // Graph marks some 4xx as temporary ("is_transient"); whether the message went out is then not stated.
  if (error.is_transient === true) return new ProviderError(message, { retryable: true, outcome: 'unknown', code: codeText, httpStatus });
  const unreachable = (code !== undefined && UNREACHABLE_CODES.has(code)) || (subcode !== undefined && UNREACHABLE_SUBCODES.has(subcode));
  return new ProviderError(message, { retryable: false, outcome: 'not-sent', code: codeText, httpStatus, ...(unreachable ? { identity: 'unreachable' as const } : {}) });
}

function classifyTransportError(error: unknown, timedOut: boolean, signal: AbortSignal): ProviderError {
  if (timedOut || signal.aborted) {
    const reason = timedOut ? 'timeout' : (signal.reason as { name?: string } | undefined)?.name === 'TimeoutError' ? 'timeout' : 'aborted';
    // The request may have reached Meta and been accepted before we stopped waiting.
    return new ProviderError(`Graph API request ${reason === 'timeout' ? 'timed out' : 'was aborted'}`, { retryable: true, outcome: 'unknown', code: reason }, { cause: error });
  }
  const cause = (error as { cause?: { code?: unknown; message?: unknown } } | null)?.cause;
  const networkCode = typeof cause?.code === 'string' ? cause.code : 'network_error';
  const message = `Graph API request failed: ${typeof cause?.message === 'string' ? cause.message : error instanceof Error ? error.message : String(error)}`;
  return new ProviderError(message, { retryable: true, outcome: NEVER_CONNECTED.has(networkCode) ? 'not-sent' : 'unknown', code: networkCode }, { cause: error });
}

export interface GraphPost {
  url: string;
  accessToken: string;
  body: unknown;
  timeoutMs: number;
  signal: AbortSignal;
}

/** POSTs JSON to the Graph API once. @returns the parsed 2xx body. @throws ProviderError, classified. */
export async function postGraph(request: GraphPost): Promise<unknown> {
  if (request.signal.aborted) {
    throw new ProviderError('send aborted before it started', { retryable: true, outcome: 'not-sent', code: 'aborted' }, { cause: request.signal.reason });
  }
  const timeout = AbortSignal.timeout(request.timeoutMs);
  const signal = AbortSignal.any([request.signal, timeout]);
  let response: Response;
  let text: string;
  try {
    // The token travels in the Authorization header (Graph accepts it there), never in a URL a proxy might log.
    response = await fetch(request.url, {
      method: 'POST',
      headers: { authorization: `Bearer ${request.accessToken}`, 'content-type': 'application/json' },
      body: JSON.stringify(request.body),
      signal,
    });
    text = await response.text();
  } catch (error) {
    throw classifyTransportError(error, timeout.aborted, request.signal);
  }
  let json: unknown;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }
  if (!response.ok) throw classifyGraphError(response.status, json, response.headers.get('retry-after'));
  if (json === undefined) {
    throw new ProviderError(`Graph API answered ${response.status} without a JSON body`, { retryable: true, outcome: 'unknown', code: 'invalid_response', httpStatus: response.status });
  }
  return json;
}

export function graphUrl(base: string | undefined, version: string | undefined, path: string): string {
  return `${(base ?? DEFAULT_GRAPH_API_BASE).replace(/\/+$/, '')}/${version ?? DEFAULT_GRAPH_API_VERSION}/${path}`;
}

/** Validates a webhook's shape after its signature was checked. @throws BadRequestError `invalid_webhook`. */
export function parseWebhookShape<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  throw new BadRequestError('invalid_webhook', `malformed ${what}`, {
    details: parsed.error.issues.map((issue) => ({ path: issue.path.join('.'), message: issue.message })),
  });
}

/** A send outside every window Meta allows: thrown before calling the API so the outbox can fall back. */
export function outsideWindowError(message: string): ProviderError {
  return new ProviderError(message, { retryable: false, outcome: 'not-sent', code: 'outside_window', identity: 'not_now' });
}

// ---------------------------------------------------------------------------------------------------------
// Messenger

export interface MessengerConfig {
  appSecret: string;
  verifyToken: string;
  pageAccessToken: string;
  pageId: string;
  /** Unset means https://graph.facebook.com; demo mode and tests point it at the loopback fake. */
  graphApiBase?: string;
  graphApiVersion?: string;
  timeoutMs: number;
  now?: () => Date;
}

/**
 * A delivery or read watermark: every message the page sent to `psid` before `watermark` has reached that
 * status. Meta sends read receipts only this way, and delivery receipts may come without `mids`.
 */
export interface MessengerWatermark {
  psid: string;
  status: 'delivered' | 'read';
  watermark: Date;
}

/** Extra power of the Messenger adapter (see MessengerWatermark). */
export interface WatermarkParser {
  /** Checks the signature first, like parseWebhook; returns one watermark per delivery/read event. */
  parseWatermarks(request: WebhookRequest): MessengerWatermark[];
}

/**
 * parseWebhook returns inbound messages and one `delivered` DeliveryStatus per mid a delivery receipt lists;
 * read receipts and mid-less delivery receipts carry only a watermark, so they come from parseWatermarks. A
 * Messenger route calls both on the same request; applying a status both ways is harmless (forward-only).
 */
export interface MessengerAdapter extends ChannelAdapter, SubscriptionVerifier, WatermarkParser {}

export type MessagingType = { messaging_type: 'RESPONSE' } | { messaging_type: 'MESSAGE_TAG'; tag: 'HUMAN_AGENT' };

/** Meta's windows, measured from the person's last message; null when no window is open. */
export function chooseMessagingType(lastInboundAt: Date | null | undefined, now: Date): MessagingType | null {
  if (!lastInboundAt) return null;
  const ageMs = now.getTime() - lastInboundAt.getTime();
  if (ageMs < STANDARD_WINDOW_MS) return { messaging_type: 'RESPONSE' };
  if (ageMs < HUMAN_AGENT_WINDOW_MS) return { messaging_type: 'MESSAGE_TAG', tag: 'HUMAN_AGENT' };
  return null;
}

const party = z.object({ id: z.string().min(1) });
const timestampMs = z.number().int().nonnegative();
const messengerEnvelope = z.object({
  object: z.string(),
  entry: z.array(z.object({ id: z.string().optional(), time: z.number().optional(), messaging: z.array(z.record(z.string(), z.unknown())).optional() })),
});
const messageEvent = z.object({
  sender: party,
  recipient: party,
  timestamp: timestampMs,
  message: z.object({
    mid: z.string().min(1),
    text: z.string().optional(),
    is_echo: z.boolean().optional(),
    attachments: z.array(z.object({ type: z.string(), payload: z.object({ url: z.string().optional() }).nullish() })).optional(),
  }),
});
const deliveryEvent = z.object({ sender: party, delivery: z.object({ mids: z.array(z.string().min(1)).optional(), watermark: timestampMs }) });
const readEvent = z.object({ sender: party, read: z.object({ watermark: timestampMs }) });

// Messenger names a media kind, not a MIME type; the wildcard says as much as Meta does.
const ATTACHMENT_CONTENT_TYPES: Record<string, string> = { image: 'image/*', video: 'video/*', audio: 'audio/*' };

export function createMessenger(config: MessengerConfig): MessengerAdapter {
  if (!config.appSecret) throw new Error('Messenger appSecret is required: without it any webhook would verify');
  const now = config.now ?? (() => new Date());
  const sendUrl = graphUrl(config.graphApiBase, config.graphApiVersion, `${encodeURIComponent(config.pageId)}/messages`);

  function read(request: WebhookRequest): { events: ChannelEvent[]; watermarks: MessengerWatermark[] } {
    verifyMetaSignature(request, config.appSecret);
    const body = parseWebhookShape(messengerEnvelope, parseMetaJson(request.rawBody), 'Messenger webhook');
    const events: ChannelEvent[] = [];
    const watermarks: MessengerWatermark[] = [];
    if (body.object !== 'page') return { events, watermarks };
    for (const entry of body.entry) {
      // One app may be subscribed to several pages; another page's events are not ours to store.
      if (entry.id !== config.pageId) continue;
      for (const raw of entry.messaging ?? []) {
        if ('message' in raw) {
          const event = parseWebhookShape(messageEvent, raw, 'Messenger message event');
          if (event.message.is_echo || event.sender.id === config.pageId) continue;
          const media: MediaRef[] = (event.message.attachments ?? []).flatMap((a) =>
            a.payload?.url ? [{ url: a.payload.url, ...(ATTACHMENT_CONTENT_TYPES[a.type] ? { contentType: ATTACHMENT_CONTENT_TYPES[a.type] } : {}) }] : [],
          );
          const inbound: InboundMessage = {
            kind: 'inbound',
            channel: 'messenger',
            provider: 'meta',
            providerMessageId: event.message.mid,
            from: event.sender.id,
            to: event.recipient.id,
            body: event.message.text ?? '',
            media,
            receivedAt: new Date(event.timestamp),
          };
          events.push(inbound);
        } else if ('delivery' in raw) {
          const event = parseWebhookShape(deliveryEvent, raw, 'Messenger delivery event');
          for (const mid of event.delivery.mids ?? []) {
            const status: DeliveryStatus = { kind: 'status', channel: 'messenger', provider: 'meta', providerMessageId: mid, status: 'delivered' };
            events.push(status);
          }
          watermarks.push({ psid: event.sender.id, status: 'delivered', watermark: new Date(event.delivery.watermark) });
        } else if ('read' in raw) {
          const event = parseWebhookShape(readEvent, raw, 'Messenger read event');
          watermarks.push({ psid: event.sender.id, status: 'read', watermark: new Date(event.read.watermark) });
        }
        // postback, reaction, optin, referral …: we never offer them, so they are ignored.
      }
    }
    return { events, watermarks };
  }

  return {
    channel: 'messenger',
    provider: 'meta',
    lookup: 'none',

    async send(message: OutboundMessage, options) {
      if (message.media.length > 0) {
        // The Send API takes one attachment per message and no caption: one outbox row would become several sends.
        throw new ProviderError('Messenger sends text only from the outbox; media needs one send per attachment', { retryable: false, outcome: 'not-sent', code: 'media_unsupported' });
      }
      const type = chooseMessagingType(message.lastInboundAt, now());
      if (!type) {
        throw outsideWindowError(
          message.lastInboundAt
            ? `Messenger allows replies only within 7 days of the person's last message (last ${message.lastInboundAt.toISOString()})`
            : 'Messenger allows replies only to someone who has written to the page',
        );
      }
      const json = await postGraph({
        url: sendUrl,
        accessToken: config.pageAccessToken,
        body: { recipient: { id: message.to }, ...type, message: { text: message.body } },
        timeoutMs: config.timeoutMs,
        signal: options.signal,
      });
      const messageId = (json as { message_id?: unknown }).message_id;
      if (typeof messageId !== 'string' || messageId === '') {
        throw new ProviderError('Send API answered without a message_id', { retryable: true, outcome: 'unknown', code: 'invalid_response' });
      }
      return { providerMessageId: messageId };
    },

    async findSent() {
      // Meta has no API to list what a page sent, and the Send API takes no idempotency key, so an ambiguous
      // send (timeout, 5xx, dropped connection) cannot be looked up (lookup: 'none'). send() still calls it
      // retryable 'unknown': the outbox then holds the message as uncertain for a coordinator instead of resending
      // it (docs/ARCHITECTURE.md §5). Never called by the outbox; kept for the interface.
      return [];
    },

    parseWebhook(request) {
      return read(request).events;
    },

    parseWatermarks(request) {
      return read(request).watermarks;
    },

    verifySubscription(query) {
      return verifySubscription(query, config.verifyToken);
    },
  };
}
