import { createHash, randomBytes } from 'node:crypto';
import type { CoordinatorRole } from '../core/types.ts';
import type { Coordinator } from './coordinators.ts';
import type { Queryable } from './db.ts';
import { notifySessionsRevoked } from './notify.ts';

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
     JOIN coordinators c ON c.id = x.coordinator_id AND c.disabled_at IS NULL`,
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

/** The name live streams know a session by (see notify.ts SessionsRevoked). */
export const sessionCredential = (sessionId: string) => `session:${sha256(sessionId)}`;
export const tokenCredential = (token: string) => `token:${sha256(token)}`;

export async function revokeWebSession(db: Queryable, sessionId: string): Promise<void> {
  await db.query(`UPDATE web_sessions SET revoked_at = now() WHERE id_hash = $1 AND revoked_at IS NULL`, [sha256(sessionId)]);
  await notifySessionsRevoked(db, { credential: sessionCredential(sessionId) });
}

/**
 * Which of these credentials ('session:<sha256>' / 'token:<sha256>') still authenticate someone: not revoked,
 * not expired, account not disabled. Live streams re-check theirs with it on every heartbeat.
 */
export async function liveCredentials(db: Queryable, credentials: readonly string[]): Promise<Set<string>> {
  if (credentials.length === 0) return new Set();
  const result = await db.query<{ credential: string }>(
    `SELECT 'session:' || s.id_hash AS credential FROM web_sessions s JOIN coordinators c ON c.id = s.coordinator_id
     WHERE 'session:' || s.id_hash = ANY($1::text[]) AND s.revoked_at IS NULL AND s.expires_at > now() AND s.absolute_expires_at > now() AND c.disabled_at IS NULL
     UNION ALL
     SELECT 'token:' || t.token_hash FROM api_tokens t JOIN coordinators c ON c.id = t.coordinator_id
     WHERE 'token:' || t.token_hash = ANY($1::text[]) AND t.revoked_at IS NULL AND t.expires_at > now() AND c.disabled_at IS NULL`,
    [credentials],
  );
  return new Set(result.rows.map((row) => row.credential));
}

/** Revokes every session and bearer token of a coordinator (sign out everywhere, or an admin disabling access). */
export async function revokeAllSessions(db: Queryable, coordinatorId: string): Promise<number> {
  const sessions = await db.query(`UPDATE web_sessions SET revoked_at = now() WHERE coordinator_id = $1 AND revoked_at IS NULL`, [coordinatorId]);
  const tokens = await db.query(`UPDATE api_tokens SET revoked_at = now() WHERE coordinator_id = $1 AND revoked_at IS NULL`, [coordinatorId]);
  await notifySessionsRevoked(db, { coordinatorId });
  return sessions.rowCount + tokens.rowCount;
}

export interface LockoutPolicy {
  windowMs: number;
  /** Password checks per account per window, from anywhere; a successful sign-in resets the account's count. */
  maxPerAccount: number;
  /** Wrong passwords per client IP per window, over all accounts. */
  maxFailuresPerIp: number;
}

export const DEFAULT_LOCKOUT: LockoutPolicy = { windowMs: 15 * 60_000, maxPerAccount: 5, maxFailuresPerIp: 50 };

const accountKey = (email: string) => `account:${email.toLowerCase()}`;
const ipKey = (ip: string | null) => `ip:${ip ?? '-'}`;

/**
 * Counts one attempt against `key` and returns its number within the current window, in one statement, so
 * concurrent attempts (on any process) each get a distinct number. An expired window restarts at 1.
 */
async function bumpAttempts(db: Queryable, key: string, windowMs: number): Promise<{ attempts: number; retryAfterMs: number }> {
  const result = await db.query<{ attempts: number; retry_after_ms: number }>(
    `INSERT INTO login_attempts AS a (key, window_start, attempts) VALUES ($1, now(), 1)
     ON CONFLICT (key) DO UPDATE SET
       attempts = CASE WHEN a.window_start <= now() - make_interval(secs => $2) THEN 1 ELSE a.attempts + 1 END,
       window_start = CASE WHEN a.window_start <= now() - make_interval(secs => $2) THEN now() ELSE a.window_start END
     RETURNING attempts, (extract(epoch FROM (window_start + make_interval(secs => $2) - now())) * 1000)::float8 AS retry_after_ms`,
    [key, windowMs / 1000],
  );
  const row = result.rows[0]!;
  return { attempts: row.attempts, retryAfterMs: Math.max(0, Number(row.retry_after_ms)) };
}

async function countedFailures(db: Queryable, key: string, windowMs: number): Promise<{ attempts: number; retryAfterMs: number }> {
  const result = await db.query<{ attempts: number; retry_after_ms: number }>(
    `SELECT attempts, (extract(epoch FROM (window_start + make_interval(secs => $2) - now())) * 1000)::float8 AS retry_after_ms
     FROM login_attempts WHERE key = $1 AND window_start > now() - make_interval(secs => $2)`,
    [key, windowMs / 1000],
  );
  const row = result.rows[0];
  return row ? { attempts: row.attempts, retryAfterMs: Math.max(0, Number(row.retry_after_ms)) } : { attempts: 0, retryAfterMs: 0 };
}

export type LoginAdmission = { allowed: true } | { allowed: false; reason: 'account' | 'ip'; retryAfterMs: number };

/**
 * Decides, before the password is checked, whether this sign-in attempt may be evaluated. The rule:
 * - per account: at most `maxPerAccount` password checks per window from anywhere, counted atomically as they
 *   start (so parallel guesses cannot all slip under the limit); a successful sign-in resets the count.
 * - per client IP: at most `maxFailuresPerIp` *wrong* passwords per window over all accounts. Attempts refused
 *   by either rule are not evaluated and count as no failure, so one attacked account adds at most
 *   `maxPerAccount` failures to an IP: an IP reaches its limit only by guessing at many accounts, and until
 *   then anyone's correct password from that IP (a shared office or proxy) still signs in.
 */
export async function admitLoginAttempt(db: Queryable, args: { email: string; ip: string | null }, policy: LockoutPolicy = DEFAULT_LOCKOUT): Promise<LoginAdmission> {
  const ip = await countedFailures(db, ipKey(args.ip), policy.windowMs);
  if (ip.attempts >= policy.maxFailuresPerIp) return { allowed: false, reason: 'ip', retryAfterMs: ip.retryAfterMs };
  const account = await bumpAttempts(db, accountKey(args.email), policy.windowMs);
  if (account.attempts > policy.maxPerAccount) return { allowed: false, reason: 'account', retryAfterMs: account.retryAfterMs };
  return { allowed: true };
}

/** A wrong password: counts against the client IP (the account's attempt was already counted on admission). */
export async function recordLoginFailure(db: Queryable, args: { ip: string | null }, policy: LockoutPolicy = DEFAULT_LOCKOUT): Promise<void> {
  await bumpAttempts(db, ipKey(args.ip), policy.windowMs);
  // Keep the table small: rows whose window ended long ago count for nothing.
  await db.query(`DELETE FROM login_attempts WHERE window_start < now() - interval '1 day'`);
}

/** A successful sign-in resets the account's count (the IP's failures stand). */
export async function clearLoginAttempts(db: Queryable, email: string): Promise<void> {
  await db.query(`DELETE FROM login_attempts WHERE key = $1`, [accountKey(email)]);
}
