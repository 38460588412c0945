import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Signed, expiring web chat links. The token is `base64url(payload) "." base64url(HMAC-SHA256(secret, payload))`
 * with payload `{"v":1,"p":patientId,"e":expiresAtSeconds}`: it binds the chat to one patient without an account.
 * Hand-written rather than a JWT library because it is one HMAC with one fixed algorithm: no `alg` header to
 * confuse, nothing to configure. A link cannot be revoked before it expires except by rotating the secret.
 */
export interface WebchatLinkClaims {
  patientId: string;
  expiresAt: Date;
}

export type WebchatLinkCheck = { ok: true; claims: WebchatLinkClaims } | { ok: false; reason: 'malformed' | 'bad_signature' | 'expired' };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function sign(secret: string, payload: string): Buffer {
  return createHmac('sha256', secret).update(`switchboard-webchat-link.${payload}`).digest();
}

export function createWebchatToken(secret: string, claims: WebchatLinkClaims): string {
  const payload = Buffer.from(JSON.stringify({ v: 1, p: claims.patientId, e: Math.floor(claims.expiresAt.getTime() / 1000) })).toString('base64url');
  return `${payload}.${sign(secret, payload).toString('base64url')}`;
}

/** Checks the signature before reading anything from the payload; a token at or past its expiry is refused. */
export function verifyWebchatToken(secret: string, token: string, now: Date = new Date()): WebchatLinkCheck {
  if (token.length > 512) return { ok: false, reason: 'malformed' };
  const parts = token.split('.');
  if (parts.length !== 2 || !/^[A-Za-z0-9_-]+$/.test(parts[0]!) || !/^[A-Za-z0-9_-]+$/.test(parts[1]!)) return { ok: false, reason: 'malformed' };
  const [payload, signature] = parts as [string, string];
  const expected = sign(secret, payload);
  const given = Buffer.from(signature, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, reason: 'bad_signature' };
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch {
    return { ok: false, reason: 'malformed' };
  }
  const { v, p, e } = (decoded ?? {}) as { v?: unknown; p?: unknown; e?: unknown };
  if (v !== 1 || typeof p !== 'string' || !UUID.test(p) || typeof e !== 'number' || !Number.isInteger(e)) return { ok: false, reason: 'malformed' };
  if (e * 1000 <= now.getTime()) return { ok: false, reason: 'expired' };
  return { ok: true, claims: { patientId: p.toLowerCase(), expiresAt: new Date(e * 1000) } };
}

/** The address of a patient's web chat identity: stable, derived from the patient the link was issued for. */
export const webchatAddress = (patientId: string): string => `patient:${patientId}`;
