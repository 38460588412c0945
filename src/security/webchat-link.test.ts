import { describe, expect, it } from 'vitest';
import { createWebchatToken, verifyWebchatToken } from './webchat-link.ts';

const secret = 'a-test-secret-that-is-long-enough-0123456789';
const patientId = '6f1c2f5e-8a3b-4c1d-9e2f-0a1b2c3d4e5f';
const now = new Date('2026-11-24T12:00:00Z');
const later = new Date('2026-11-25T12:00:00Z');

describe('web chat links', () => {
  it('round-trips the patient and expiry', () => {
    const token = createWebchatToken(secret, { patientId, expiresAt: later });
    expect(verifyWebchatToken(secret, token, now)).toEqual({ ok: true, claims: { patientId, expiresAt: later } });
  });

  it('refuses an expired link', () => {
    const token = createWebchatToken(secret, { patientId, expiresAt: later });
    expect(verifyWebchatToken(secret, token, new Date(later.getTime() + 1000))).toEqual({ ok: false, reason: 'expired' });
  });

  it('refuses a link signed with another secret', () => {
    const token = createWebchatToken('another-secret-that-is-long-enough-01234567', { patientId, expiresAt: later });
    expect(verifyWebchatToken(secret, token, now)).toEqual({ ok: false, reason: 'bad_signature' });
  });

  it('refuses a payload swapped for another patient under the old signature', () => {
    const token = createWebchatToken(secret, { patientId, expiresAt: later });
    const other = createWebchatToken(secret, { patientId: '00000000-0000-4000-8000-000000000000', expiresAt: later });
    const forged = `${other.split('.')[0]}.${token.split('.')[1]}`;
    expect(verifyWebchatToken(secret, forged, now)).toEqual({ ok: false, reason: 'bad_signature' });
  });

  it('refuses an extended expiry', () => {
    const token = createWebchatToken(secret, { patientId, expiresAt: later });
    const [, signature] = token.split('.');
    const payload = Buffer.from(JSON.stringify({ v: 1, p: patientId, e: 4_000_000_000 })).toString('base64url');
    expect(verifyWebchatToken(secret, `${payload}.${signature}`, now).ok).toBe(false);
  });

  it.each(['', 'abc', 'a.b.c', 'a b.c', '.'.repeat(600)])('refuses malformed token %j', (token) => {
    expect(verifyWebchatToken(secret, token, now)).toEqual({ ok: false, reason: 'malformed' });
  });
});
