import { newWebchatToken, webchatTokenHash } from '../security/webchat-link.ts';
import type { Db, Queryable } from './db.ts';

/** Why a link no longer works; `revoked_reason` says more (revoked, renewed, reassigned, merged). */
export type WebchatLinkCheck = { ok: true; linkId: string; patientId: string; expiresAt: Date } | { ok: false; reason: 'unknown' | 'expired' | 'revoked' };

export interface IssuedWebchatLink {
  linkId: string;
  token: string;
  expiresAt: Date;
}

/** Stores a new link for a patient; the token is returned once and only its keyed hash is kept. */
export async function issueWebchatLink(db: Queryable, secret: string, args: { patientId: string; createdBy: string | null; ttlMs: number }): Promise<IssuedWebchatLink> {
  const token = newWebchatToken();
  const result = await db.query<{ id: string; expires_at: Date }>(
    `INSERT INTO webchat_links (token_hash, patient_id, created_by, expires_at) VALUES ($1, $2, $3, now() + make_interval(secs => $4)) RETURNING id, expires_at`,
    [webchatTokenHash(secret, token), args.patientId, args.createdBy, args.ttlMs / 1000],
  );
  return { linkId: result.rows[0]!.id, token, expiresAt: result.rows[0]!.expires_at };
}

export async function checkWebchatLink(db: Queryable, secret: string, token: string): Promise<WebchatLinkCheck> {
  const result = await db.query<{ id: string; patient_id: string; expires_at: Date; revoked: boolean; expired: boolean }>(
    `SELECT id, patient_id, expires_at, revoked_at IS NOT NULL AS revoked, expires_at <= now() AS expired FROM webchat_links WHERE token_hash = $1`,
    [webchatTokenHash(secret, token)],
  );
  const row = result.rows[0];
  if (!row) return { ok: false, reason: 'unknown' };
  if (row.revoked) return { ok: false, reason: 'revoked' };
  if (row.expired) return { ok: false, reason: 'expired' };
  return { ok: true, linkId: row.id, patientId: row.patient_id, expiresAt: row.expires_at };
}

/** Is this link (by id) still usable? Open streams ask on every wake-up and heartbeat. */
export async function isWebchatLinkLive(db: Queryable, linkId: string): Promise<boolean> {
  const result = await db.query(`SELECT 1 FROM webchat_links WHERE id = $1 AND revoked_at IS NULL AND expires_at > now()`, [linkId]);
  return result.rowCount > 0;
}

/** Revokes one link of a patient, or all of them (linkId null); wakes the patient's open streams so they end. */
export async function revokeWebchatLinks(db: Queryable, args: { patientId: string; linkId: string | null; reason: string }): Promise<number> {
  const result = await db.query(
    `UPDATE webchat_links SET revoked_at = now(), revoked_reason = $3
     WHERE patient_id = $1 AND ($2::uuid IS NULL OR id = $2::uuid) AND revoked_at IS NULL`,
    [args.patientId, args.linkId, args.reason],
  );
  if (result.rowCount > 0) await db.query(`SELECT pg_notify('switchboard_webchat', $1)`, [args.patientId]);
  return result.rowCount;
}

/**
 * Exchanges a still-valid link for a fresh one (same patient, same maker, a new lifetime) and revokes the old
 * one, in one transaction: a link is renewed at most once.
 */
export async function renewWebchatLink(db: Db, secret: string, args: { linkId: string; ttlMs: number }): Promise<IssuedWebchatLink | null> {
  return db.transaction(async (tx) => {
    const old = await tx.query<{ patient_id: string; created_by: string | null }>(
      `UPDATE webchat_links SET revoked_at = now(), revoked_reason = 'renewed'
       WHERE id = $1 AND revoked_at IS NULL AND expires_at > now() RETURNING patient_id, created_by`,
      [args.linkId],
    );
    const row = old.rows[0];
    if (!row) return null;
    return issueWebchatLink(tx, secret, { patientId: row.patient_id, createdBy: row.created_by, ttlMs: args.ttlMs });
  });
}

export async function listWebchatLinks(db: Queryable, patientId: string): Promise<Array<{ id: string; createdBy: string | null; createdAt: Date; expiresAt: Date; revokedAt: Date | null; revokedReason: string | null }>> {
  const result = await db.query<{ id: string; created_by: string | null; created_at: Date; expires_at: Date; revoked_at: Date | null; revoked_reason: string | null }>(
    `SELECT id, created_by, created_at, expires_at, revoked_at, revoked_reason FROM webchat_links WHERE patient_id = $1 ORDER BY created_at DESC LIMIT 100`,
    [patientId],
  );
  return result.rows.map((r) => ({ id: r.id, createdBy: r.created_by, createdAt: r.created_at, expiresAt: r.expires_at, revokedAt: r.revoked_at, revokedReason: r.revoked_reason }));
}
