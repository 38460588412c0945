import { createHash, randomBytes } from 'node:crypto';
import type { CoordinatorRole } from '../core/types.ts';
import type { Queryable } from './db.ts';
import { notifySessionsRevoked } from './notify.ts';

export interface Coordinator {
  id: string;
  email: string;
  name: string;
  role: CoordinatorRole;
  isAvailable: boolean;
}

interface CoordinatorRow {
  id: string;
  email: string;
  name: string;
  role: CoordinatorRole;
  is_available: boolean;
  password_hash: string;
  disabled_at: Date | null;
}

const toCoordinator = (row: CoordinatorRow): Coordinator => ({ id: row.id, email: row.email, name: row.name, role: row.role, isAvailable: row.is_available });

export async function insertCoordinator(
  db: Queryable,
  args: { email: string; name: string; role: CoordinatorRole; passwordHash: string },
): Promise<Coordinator | null> {
  const result = await db.query<CoordinatorRow>(
    `INSERT INTO coordinators (email, name, role, password_hash) VALUES (lower($1), $2, $3, $4)
     ON CONFLICT (email) DO NOTHING RETURNING *`,
    [args.email, args.name, args.role, args.passwordHash],
  );
  return result.rows[0] ? toCoordinator(result.rows[0]) : null;
}

export async function findCoordinatorForLogin(db: Queryable, email: string): Promise<(Coordinator & { passwordHash: string; disabled: boolean }) | null> {
  const result = await db.query<CoordinatorRow>(`SELECT * FROM coordinators WHERE email = lower($1)`, [email]);
  const row = result.rows[0];
  return row ? { ...toCoordinator(row), passwordHash: row.password_hash, disabled: row.disabled_at !== null } : null;
}

/** Disables (true) or re-enables (false) an account; null when there is no such coordinator. */
export async function setCoordinatorDisabled(db: Queryable, id: string, disabled: boolean): Promise<Coordinator | null> {
  const result = await db.query<CoordinatorRow>(
    `UPDATE coordinators SET disabled_at = CASE WHEN $2::boolean THEN COALESCE(disabled_at, now()) END WHERE id = $1 RETURNING *`,
    [id, disabled],
  );
  return result.rows[0] ? toCoordinator(result.rows[0]) : null;
}

export async function setCoordinatorPassword(db: Queryable, id: string, passwordHash: string): Promise<Coordinator | null> {
  const result = await db.query<CoordinatorRow>(`UPDATE coordinators SET password_hash = $2 WHERE id = $1 RETURNING *`, [id, passwordHash]);
  return result.rows[0] ? toCoordinator(result.rows[0]) : null;
}

export async function findCoordinator(db: Queryable, id: string): Promise<Coordinator | null> {
  const result = await db.query<CoordinatorRow>(`SELECT * FROM coordinators WHERE id = $1`, [id]);
  return result.rows[0] ? toCoordinator(result.rows[0]) : null;
}

export async function listCoordinators(db: Queryable): Promise<Array<Coordinator & { assignedPatients: number; disabled: boolean }>> {
  const result = await db.query<CoordinatorRow & { assigned: number }>(
    `SELECT c.*, (SELECT count(*)::int FROM assignments a WHERE a.coordinator_id = c.id) AS assigned
     FROM coordinators c ORDER BY c.name`,
  );
  return result.rows.map((row) => ({ ...toCoordinator(row), assignedPatients: row.assigned, disabled: row.disabled_at !== null }));
}

const hashToken = (token: string) => createHash('sha256').update(token).digest('hex');

export async function issueToken(db: Queryable, coordinatorId: string, ttlMs: number): Promise<{ token: string; expiresAt: Date }> {
  const token = randomBytes(32).toString('base64url');
  const result = await db.query<{ expires_at: Date }>(
    `INSERT INTO api_tokens (token_hash, coordinator_id, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3)) RETURNING expires_at`,
    [hashToken(token), coordinatorId, ttlMs / 1000],
  );
  return { token, expiresAt: result.rows[0]!.expires_at };
}

export async function findCoordinatorByToken(db: Queryable, token: string): Promise<Coordinator | null> {
  const result = await db.query<CoordinatorRow>(
    `SELECT c.* FROM api_tokens t JOIN coordinators c ON c.id = t.coordinator_id
     WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND t.expires_at > now() AND c.disabled_at IS NULL`,
    [hashToken(token)],
  );
  return result.rows[0] ? toCoordinator(result.rows[0]) : null;
}

export async function revokeToken(db: Queryable, token: string): Promise<void> {
  await db.query(`UPDATE api_tokens SET revoked_at = now() WHERE token_hash = $1 AND revoked_at IS NULL`, [hashToken(token)]);
  // Named as web-sessions.ts tokenCredential names it, so this token's live streams close on every process.
  await notifySessionsRevoked(db, { credential: `token:${hashToken(token)}` });
}
