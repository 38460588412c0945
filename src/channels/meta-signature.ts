import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { BadRequestError, ForbiddenError } from '../errors.ts';
import type { WebhookRequest } from './channel.ts';

/**
 * Shared by the Messenger and WhatsApp Cloud adapters: both are Meta Graph webhooks, signed the same way and
 * subscribed with the same GET handshake (../shared/reference/providers.md §6–§7).
 */

export const META_SIGNATURE_HEADER = 'x-hub-signature-256';

const SIGNATURE_FORMAT = /^sha256=([0-9a-f]{64})$/i;

/** `sha256=<hex HMAC-SHA256(appSecret, body)>`, the value Meta puts in X-Hub-Signature-256. */
export function signMetaPayload(appSecret: string, body: Buffer | string): string {
  return 'sha256=' + createHmac('sha256', appSecret).update(body).digest('hex');
}

function header(headers: WebhookRequest['headers'], name: string): string | undefined {
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== name) continue;
    return Array.isArray(value) ? value[0] : value;
  }
  return undefined;
}

/**
 * Checks X-Hub-Signature-256 over the raw body bytes. Meta signs the payload exactly as sent (non-ASCII escaped as
 * `\uXXXX`), so the bytes must never be re-serialised before this check.
 * @throws ForbiddenError `signature_missing` (no header; the legacy SHA-1 `X-Hub-Signature` alone is not accepted)
 *   or `signature_invalid` (malformed or wrong).
 */
export function verifyMetaSignature(request: WebhookRequest, appSecret: string): void {
  const signature = header(request.headers, META_SIGNATURE_HEADER);
  if (!signature) throw new ForbiddenError('signature_missing', 'X-Hub-Signature-256 header is missing');
  const match = SIGNATURE_FORMAT.exec(signature.trim());
  if (!match) throw new ForbiddenError('signature_invalid', 'X-Hub-Signature-256 is not of the form sha256=<hex>');
  const expected = createHmac('sha256', appSecret).update(request.rawBody).digest();
  const given = Buffer.from(match[1]!, 'hex');
  if (!timingSafeEqual(expected, given)) throw new ForbiddenError('signature_invalid', 'X-Hub-Signature-256 does not match');
}

/** Parses a webhook body after its signature was checked. @throws BadRequestError `invalid_webhook`. */
export function parseMetaJson(rawBody: Buffer): unknown {
  try {
    return JSON.parse(rawBody.toString('utf8'));
  } catch (error) {
    throw new BadRequestError('invalid_webhook', 'webhook body is not valid JSON', { cause: error });
  }
}

/** The query of Meta's subscription GET, as a framework hands it over. */
export type SubscriptionQuery = URLSearchParams | Record<string, unknown>;

function queryValue(query: SubscriptionQuery, key: string): string | undefined {
  if (query instanceof URLSearchParams) {
    const values = query.getAll(key);
    return values.length === 1 ? values[0] : undefined;
  }
  const value = query[key];
  // A repeated parameter is ambiguous: refuse rather than guess which one Meta meant.
  return typeof value === 'string' ? value : undefined;
}

const digest = (value: string) => createHash('sha256').update(value).digest();

/**
 * Meta's webhook subscription handshake: `GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`.
 * @returns the challenge to answer verbatim with 200, or null when the caller must answer 403.
 */
export function verifySubscription(query: SubscriptionQuery, verifyToken: string): string | null {
  const mode = queryValue(query, 'hub.mode');
  const token = queryValue(query, 'hub.verify_token');
  const challenge = queryValue(query, 'hub.challenge');
  if (mode !== 'subscribe' || token === undefined || !challenge || !verifyToken) return null;
  // Hashing first makes the comparison constant-time whatever the lengths.
  return timingSafeEqual(digest(token), digest(verifyToken)) ? challenge : null;
}

/** Extra power of the Meta adapters: answering the GET subscription handshake for their webhook route. */
export interface SubscriptionVerifier {
  verifySubscription(query: SubscriptionQuery): string | null;
}
