import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import Telnyx, { APIError, APIUserAbortError } from 'telnyx';
import { z } from 'zod';
import { normaliseAddress } from '../core/address.ts';
import type { ChannelEvent, MessageStatus, OutboundMessage } from '../core/types.ts';
import { BadRequestError, ForbiddenError, ProviderError } from '../errors.ts';
import type { ChannelAdapter, WebhookRequest } from './channel.ts';

export interface TelnyxSmsConfig {
  apiKey: string;
  /** The account's webhook public key, base64 of the raw 32-byte Ed25519 key (Mission Control → Keys & Credentials). */
  publicKey: string;
  fromNumber?: string;
  messagingProfileId?: string;
  /** Where the SDK sends API calls, e.g. https://api.telnyx.com/v2 (the default) or the loopback fake's `${url}/v2`. */
  apiBase?: string;
  /** Our public URL for this message's events (`webhook_url` on each send): /webhooks/telnyx/sms. */
  webhookUrl: string;
  timeoutMs: number;
  /** How far a webhook's telnyx-timestamp may be from our clock; Telnyx's own SDK allows 300 s. */
  toleranceSeconds?: number;
  now?: () => number;
}

/**
 * Telnyx's per-recipient message statuses in our vocabulary (developers.telnyx.com, "Receiving Webhooks for
 * Messaging"; the SDK's `to[].status` enum). Unknown → undefined and ignored.
 */
export function mapTelnyxStatus(status: string): MessageStatus | undefined {
  switch (status) {
    case 'queued':
      return 'queued';
    case 'sending':
      return 'sending';
    case 'sent':
      return 'sent';
    case 'delivered':
      return 'delivered';
    // The carrier never confirmed either way: as far as we can know, it left Telnyx.
    case 'delivery_unconfirmed':
      return 'sent';
    case 'delivery_failed':
      return 'undelivered';
    case 'sending_failed':
      return 'failed';
    default:
      return undefined;
  }
}

// Errors that will not go away by retrying. https://developers.telnyx.com/docs/messaging/messages/error-codes and
// https://developers.telnyx.com/development/api-fundamentals/api-errors
const PERMANENT_SEND_ERRORS = new Map<string, string>([
  ['40300', 'recipient opted out (replied STOP)'],
  ['10016', "'to' is not an E.164 number"],
  ['10002', 'invalid phone number'],
  ['40001', 'destination is not routable'],
  ['40310', "invalid 'to' address"],
]);

const NEVER_CONNECTED = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

function networkCode(error: unknown): string | undefined {
  for (let e: any = error, depth = 0; e && depth < 5; e = e.cause, depth++) {
    if (typeof e.code === 'string') return e.code;
  }
  return undefined;
}

/** Telnyx's error body is `{errors: [{code, title, detail}]}`; the SDK throws APIError subclasses carrying it. */
export function classifyTelnyxError(error: unknown): ProviderError {
  if (error instanceof ProviderError) return error;
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof APIError && typeof error.status === 'number') {
    const first = (error.error as { errors?: Array<{ code?: string | number; title?: string; detail?: string }> } | undefined)?.errors?.[0];
    const code = first?.code === undefined ? String(error.status) : String(first.code);
    const text = first ? `${first.title ?? ''}${first.detail ? `: ${first.detail}` : ''}` || message : message;
    if (error.status === 429) {
      const retryAfter = Number(error.headers?.get?.('retry-after'));
      // A throttled request was refused before it was processed, so it cannot have been sent.
      return new ProviderError(text, { retryable: true, outcome: 'not-sent', code, httpStatus: 429, ...(retryAfter > 0 ? { retryAfterMs: retryAfter * 1000 } : {}) }, { cause: error });
    }
    if (error.status >= 500 || error.status === 408) return new ProviderError(text, { retryable: true, outcome: 'unknown', code, httpStatus: error.status }, { cause: error });
    if (error.status === 401 || error.status === 403) {
      // Our credentials are wrong: every message would fail the same way, so wait for an operator.
      return new ProviderError(text, { retryable: true, outcome: 'not-sent', code, httpStatus: error.status }, { cause: error });
    }
    const reason = PERMANENT_SEND_ERRORS.get(code);
    // The recipient replied STOP: the outbox records the identity as opted out (as Twilio's 21610 does).
    const identity = code === '40300' ? ({ identity: 'opted_out' } as const) : {};
    return new ProviderError(reason ? `${reason}: ${text}` : text, { retryable: false, outcome: 'not-sent', code, httpStatus: error.status, ...identity }, { cause: error });
  }
  // No HTTP answer: a timeout, an abort or a dropped connection may have reached Telnyx; a refused connection did not.
  const codeOfNetwork = networkCode(error) ?? (error instanceof APIUserAbortError ? 'aborted' : 'network_error');
  return new ProviderError(message, { retryable: true, outcome: NEVER_CONNECTED.has(codeOfNetwork) ? 'not-sent' : 'unknown', code: codeOfNetwork }, { cause: error });
}

/** Raw 32-byte Ed25519 public key (base64, as Telnyx shows it) → a node KeyObject. */
export function telnyxPublicKey(base64: string): KeyObject {
  const raw = Buffer.from(base64, 'base64');
  if (raw.length !== 32) throw new Error(`a Telnyx public key is 32 bytes of base64; got ${raw.length} bytes`);
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' });
}

const header = (headers: WebhookRequest['headers'], name: string) => {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
};

/**
 * Telnyx signs `${telnyx-timestamp}|${raw body}` with Ed25519 (telnyx-signature-ed25519, base64). The official SDK
 * has a verifier (`client.webhooks.unwrap`), but it is async (WebCrypto) and ChannelAdapter.parseWebhook is
 * synchronous, so we verify with node:crypto's one-shot `verify`; the fake's tests check that our signatures also
 * pass the SDK's verifier, so the two cannot drift apart unnoticed.
 */
export function verifyTelnyxSignature(key: KeyObject, request: Pick<WebhookRequest, 'headers' | 'rawBody'>, nowMs: number, toleranceSeconds: number): void {
  const signature = header(request.headers, 'telnyx-signature-ed25519');
  const timestamp = header(request.headers, 'telnyx-timestamp');
  if (!signature || !timestamp) throw new ForbiddenError('signature_missing', 'telnyx-signature-ed25519 and telnyx-timestamp headers are required');
  if (!/^\d{1,12}$/.test(timestamp) || Math.abs(nowMs / 1000 - Number(timestamp)) > toleranceSeconds) {
    throw new ForbiddenError('signature_stale', 'telnyx-timestamp is missing, malformed or outside the allowed clock skew');
  }
  const signatureBytes = Buffer.from(signature, 'base64');
  const signed = Buffer.concat([Buffer.from(`${timestamp}|`, 'utf8'), request.rawBody]);
  if (signatureBytes.length !== 64 || !verify(null, signed, key, signatureBytes)) {
    throw new ForbiddenError('signature_invalid', 'telnyx-signature-ed25519 does not match');
  }
}

const PhoneRef = z.object({ phone_number: z.string().min(1), status: z.string().optional() }).loose();
const WebhookEnvelope = z.object({
  data: z
    .object({
      event_type: z.string(),
      id: z.string().optional(),
      payload: z
        .object({
          id: z.string().min(1),
          direction: z.string().optional(),
          from: PhoneRef.optional(),
          to: z.array(PhoneRef).optional(),
          text: z.string().nullish(),
          media: z.array(z.object({ url: z.string(), content_type: z.string().nullish() }).loose()).optional(),
          errors: z.array(z.object({ code: z.union([z.string(), z.number()]).optional(), title: z.string().optional(), detail: z.string().optional() }).loose()).optional(),
        })
        .loose(),
    })
    .loose(),
});

export function createTelnyxSms(config: TelnyxSmsConfig): ChannelAdapter {
  // maxRetries 0: the outbox owns retries (and looks a send up before repeating it).
  const client = new Telnyx({ apiKey: config.apiKey, maxRetries: 0, timeout: config.timeoutMs, ...(config.apiBase ? { baseURL: config.apiBase } : {}) });
  const key = telnyxPublicKey(config.publicKey);
  const now = config.now ?? Date.now;
  const tolerance = config.toleranceSeconds ?? 300;
  const sender = config.fromNumber ? { from: config.fromNumber } : { messaging_profile_id: config.messagingProfileId! };

  return {
    channel: 'sms',
    provider: 'telnyx',
    lookup: 'conclusive',

    async send(message: OutboundMessage, { signal }) {
      try {
        const sent = await client.messages.send(
          {
            ...sender,
            to: message.to,
            text: message.body,
            ...(message.media.length > 0 ? { media_urls: message.media.map((m) => m.url), type: 'MMS' as const } : {}),
            webhook_url: config.webhookUrl,
          },
          { signal },
        );
        const id = sent.data?.id;
        // Telnyx answered 200 with no id: it may hold the message, so treat it as an unknown outcome.
        if (!id) throw new ProviderError('Telnyx accepted the message but returned no id', { retryable: true, outcome: 'unknown', code: 'no_id' });
        return { providerMessageId: id };
      } catch (error) {
        throw classifyTelnyxError(error);
      }
    },

    /**
     * Telnyx has no list of sent messages with their text; its Detail Record Search lists message detail records
     * (MDRs) by recipient, sender and creation time, without the body. One patient has at most one send in flight
     * and the outbox skips ids already recorded, so the oldest unrecorded outbound MDR to this number since the
     * message was written is the ambiguous send. Limit: an MDR that Telnyx has not indexed yet is missed.
     */
    async findSent(message, { since, signal }) {
      const skewMs = 5 * 60_000;
      try {
        const page = await client.detailRecords.list(
          {
            filter: {
              record_type: 'messaging',
              direction: 'outbound',
              cld: message.to,
              ...(config.fromNumber ? { cli: config.fromNumber } : {}),
              created_at: { gte: new Date(since.getTime() - skewMs).toISOString() },
            },
            sort: ['created_at'],
            'page[size]': 50,
          },
          { signal },
        );
        return page.data
          .map((record) => record as { uuid?: string; cld?: string; direction?: string; created_at?: string })
          .filter((r) => r.uuid && r.direction === 'outbound' && r.cld === message.to && r.created_at && Date.parse(r.created_at) >= since.getTime() - skewMs)
          .sort((a, b) => Date.parse(a.created_at!) - Date.parse(b.created_at!))
          .map((r) => r.uuid!);
      } catch (error) {
        throw classifyTelnyxError(error);
      }
    },

    parseWebhook(request) {
      verifyTelnyxSignature(key, request, now(), tolerance);
      let json: unknown;
      try {
        json = JSON.parse(request.rawBody.toString('utf8'));
      } catch (error) {
        throw new BadRequestError('invalid_webhook', 'body is not JSON', { cause: error });
      }
      const parsed = WebhookEnvelope.safeParse(json);
      if (!parsed.success) throw new BadRequestError('invalid_webhook', 'not a Telnyx messaging event', { details: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`) });
      const { event_type: eventType, payload } = parsed.data.data;
      switch (eventType) {
        case 'message.received': {
          const from = payload.from?.phone_number;
          const to = payload.to?.[0]?.phone_number;
          if (!from || !to) throw new BadRequestError('invalid_webhook', 'from and to are required');
          const normalised = normaliseAddress('sms', from);
          const event: ChannelEvent = {
            kind: 'inbound',
            channel: 'sms',
            provider: 'telnyx',
            providerMessageId: payload.id,
            from: normalised.ok ? normalised.address : from,
            to,
            body: payload.text ?? '',
            media: (payload.media ?? []).map((m) => ({ url: m.url, ...(m.content_type ? { contentType: m.content_type } : {}) })),
          };
          return [event];
        }
        case 'message.sent':
        case 'message.finalized': {
          const status = mapTelnyxStatus(payload.to?.[0]?.status ?? '');
          if (!status) return [];
          const error = payload.errors?.[0];
          const event: ChannelEvent = {
            kind: 'status',
            channel: 'sms',
            provider: 'telnyx',
            providerMessageId: payload.id,
            status,
            ...(error?.code !== undefined ? { errorCode: String(error.code) } : {}),
            ...(error?.title || error?.detail ? { errorMessage: [error.title, error.detail].filter(Boolean).join(': ') } : {}),
          };
          return [event];
        }
        default:
          return [];
      }
    },
  };
}
