import { createHash, randomBytes } from 'node:crypto';
import type { CoordinatorRole } from '../core/types.ts';
import type { Coordinator } from './coordinators.ts';
import type { Queryable } from './db.ts';

const sha256 = (value: string) => createHash('sha256').update(value).digest('hex');

export interface WebSession {
  coordinator: Coordinator;
  csrfToken: string;
  expiresAt: Date;
}

/** Creates a browser session. Returns the cookie value (only its hash is stored) and the CSRF token. */
export async function createWebSession(
  db: Queryable,
  args: { coordinatorId: string; idleMs: number; absoluteMs: number; ip: string | null; userAgent: string | null },
): Promise<{ sessionId: string; csrfToken: string; expiresAt: Date }> {
  const sessionId = randomBytes(32).toString('base64url');
  const csrfToken = randomBytes(32).toString('base64url');
  const result = await db.query<{ expires_at: Date }>(
    `INSERT INTO web_sessions (id_hash, coordinator_id, csrf_token, expires_at, absolute_expires_at, ip, user_agent)
     VALUES ($1, $2, $3, now() + make_interval(secs => $4), now() + make_interval(secs => $5), $6, $7) RETURNING expires_at`,
    [sha256(sessionId), args.coordinatorId, csrfToken, args.idleMs / 1000, args.absoluteMs / 1000, args.ip, args.userAgent?.slice(0, 300) ?? null],
  );
  return { sessionId, csrfToken, expiresAt: result.rows[0]!.expires_at };
}

/**
 * Finds a live session and slides its idle expiry (never past the absolute one). Expired or revoked → null.
 * The sliding update is skipped when it moved less than a minute ago, so polling does not write on every request.
 */
export async function touchWebSession(db: Queryable, sessionId: string, idleMs: number): Promise<WebSession | null> {
  const result = await db.query<{ id: string; email: string; name: string; role: CoordinatorRole; is_available: boolean; csrf_token: string; expires_at: Date }>(
    `WITH s AS (
       UPDATE web_sessions SET last_seen_at = now(),
              expires_at = LEAST(absolute_expires_at, now() + make_interval(secs => $2))
       WHERE id_hash = $1 AND revoked_at IS NULL AND expires_at > now() AND absolute_expires_at > now()
         AND last_seen_at < now() - interval '1 minute'
       RETURNING coordinator_id, csrf_token, expires_at)
     SELECT c.id, c.email, c.name, c.role, c.is_available, x.csrf_token, x.expires_at
     FROM (SELECT coordinator_id, csrf_token, expires_at FROM s
           UNION ALL
           SELECT coordinator_id, csrf_token, expires_at FROM web_sessions
           WHERE id_hash = $1 AND revoked_at IS NULL AND expires_at > now() AND absolute_expires_at > now()
             AND NOT EXISTS (SELECT 1 FROM s)) x
     JOIN coordinators c ON c.id = x.coordinator_id`,
    [sha256(sessionId), idleMs / 1000],
  );
  const row = result.rows[0];
  if (!row) return null;
  return {
    coordinator: { id: row.id, email: row.email, name: row.name, role: row.role, isAvailable: row.is_available },
    csrfToken: row.csrf_token,
    expiresAt: row.expires_at,
  };
}

export async function revokeWebSession(db: Queryable, sessionId: string): Promise<void> {
  await db.query(`UPDATE web_sessions SET revoked_at = now() WHERE id_hash = $1 AND revoked_at IS NULL`, [sha256(sessionId)]);
}

/** Revokes every session and bearer token of a coordinator (sign out everywhere, or an admin disabling access). */
export async function revokeAllSessions(db: Queryable, coordinatorId: string): Promise<number> {
  const sessions = await db.query(`UPDATE web_sessions SET revoked_at = now() WHERE coordinator_id = $1 AND revoked_at IS NULL`, [coordinatorId]);
  const tokens = await db.query(`UPDATE api_tokens SET revoked_at = now() WHERE coordinator_id = $1 AND revoked_at IS NULL`, [coordinatorId]);
  return sessions.rowCount + tokens.rowCount;
}

export interface LockoutPolicy {
  windowMs: number;
  maxPerAccount: number;
  maxPerIp: number;
}

export const DEFAULT_LOCKOUT: LockoutPolicy = { windowMs: 15 * 60_000, maxPerAccount: 5, maxPerIp: 50 };

/**
 * How long until this email or IP may try again: failures within the window at or above the limit lock it
 * until the oldest counted failure leaves the window. Counted in the database, so it holds across processes.
 */
export async function lockoutRemainingMs(db: Queryable, args: { email: string; ip: string | null }, policy: LockoutPolicy = DEFAULT_LOCKOUT): Promise<number> {
  const result = await db.query<{ key: string; failures: number; oldest: Date }>(
    `SELECT key, count(*)::int AS failures, min(at) AS oldest FROM login_failures
     WHERE key = ANY($1::text[]) AND at > now() - make_interval(secs => $2) GROUP BY key`,
    [[`email:${args.email.toLowerCase()}`, `ip:${args.ip ?? '-'}`], policy.windowMs / 1000],
  );
  let remaining = 0;
  for (const row of result.rows) {
    const limit = row.key.startsWith('email:') ? policy.maxPerAccount : policy.maxPerIp;
    if (row.failures >= limit) remaining = Math.max(remaining, new Date(row.oldest).getTime() + policy.windowMs - Date.now());
  }
  return Math.max(0, remaining);
}

export async function recordLoginFailure(db: Queryable, args: { email: string; ip: string | null }): Promise<void> {
  await db.query(`INSERT INTO login_failures (key) VALUES ($1), ($2)`, [`email:${args.email.toLowerCase()}`, `ip:${args.ip ?? '-'}`]);
  // Keep the table small: old failures no longer count for anything.
  await db.query(`DELETE FROM login_failures WHERE at < now() - interval '1 day'`);
}

export async function clearLoginFailures(db: Queryable, email: string): Promise<void> {
  await db.query(`DELETE FROM login_failures WHERE key = $1`, [`email:${email.toLowerCase()}`]);
}
