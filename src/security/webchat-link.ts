import { createHmac, randomBytes } from 'node:crypto';

/**
 * Web chat links carry a random 256-bit token; the database keeps only its keyed hash (HMAC-SHA256 with
 * WEBCHAT_LINK_SECRET), with the patient, the coordinator who made it, its expiry and whether it was revoked
 * (src/db/webchat-links.ts). So a link can be revoked, and a copy of the table alone cannot even test a guess.
 */
export const newWebchatToken = (): string => randomBytes(32).toString('base64url');

/** Tokens are 43 base64url characters; anything else is not worth a lookup. */
export const isWellFormedWebchatToken = (token: string): boolean => /^[A-Za-z0-9_-]{43}$/.test(token);

export const webchatTokenHash = (secret: string, token: string): string => createHmac('sha256', secret).update(`switchboard-webchat-link.${token}`).digest('hex');

/** The address of a patient's web chat identity: stable, derived from the patient the link was issued for. */
export const webchatAddress = (patientId: string): string => `patient:${patientId}`;
