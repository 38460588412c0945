import { createHash, randomBytes } from 'node:crypto';
import type { Db, Queryable } from './db.ts';
import { MEDIA_JOBS_CHANNEL } from './calls.ts';
import { notifyActivity } from './notify.ts';
import { nextSeq } from './patients.ts';

export interface VisitRow {
  id: string;
  patientId: string;
  seq: number;
  coordinatorId: string;
  status: 'invited' | 'active' | 'ended';
  expiresAt: Date;
  coordinatorConsentAt: Date | null;
  patientConsentAt: Date | null;
}

const toVisit = (row: Record<string, any>): VisitRow => ({
  id: row.id,
  patientId: row.patient_id,
  seq: row.seq,
  coordinatorId: row.coordinator_id,
  status: row.status,
  expiresAt: row.expires_at,
  coordinatorConsentAt: row.coordinator_consent_at,
  patientConsentAt: row.patient_consent_at,
});

export const hashJoinToken = (token: string): string => createHash('sha256').update(token).digest('hex');

/** A visit in the patient's log with a fresh join token (256 random bits; only its hash is stored). */
export async function createVisit(db: Db, args: { patientId: string; coordinatorId: string; ttlMs: number }): Promise<{ visit: VisitRow; token: string }> {
  const token = randomBytes(32).toString('base64url');
  const visit = await db.transaction(async (tx) => {
    const seq = await nextSeq(tx, args.patientId, 'event');
    const inserted = await tx.query<Record<string, any>>(
      `INSERT INTO visits (patient_id, seq, coordinator_id, join_token_hash, expires_at)
       VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5)) RETURNING *`,
      [args.patientId, seq, args.coordinatorId, hashJoinToken(token), args.ttlMs / 1000],
    );
    await notifyActivity(tx, args.patientId, 'visit');
    return toVisit(inserted.rows[0]!);
  });
  return { visit, token };
}

export async function setInviteMessage(db: Queryable, visitId: string, messageId: string): Promise<void> {
  await db.query(`UPDATE visits SET invite_message_id = $2 WHERE id = $1`, [visitId, messageId]);
}

export async function findVisit(db: Queryable, id: string): Promise<VisitRow | null> {
  if (!/^[0-9a-f-]{36}$/i.test(id)) return null;
  const result = await db.query<Record<string, any>>(`SELECT * FROM visits WHERE id = $1`, [id]);
  return result.rows[0] ? toVisit(result.rows[0]) : null;
}

/** The visit a patient's join token opens, if the token matches and has not expired. */
export async function findVisitByToken(db: Queryable, id: string, token: string): Promise<VisitRow | null> {
  if (!/^[0-9a-f-]{36}$/i.test(id) || token.length < 20 || token.length > 100) return null;
  const result = await db.query<Record<string, any>>(
    `SELECT * FROM visits WHERE id = $1 AND join_token_hash = $2 AND expires_at > now() AND status <> 'ended'`,
    [id, hashJoinToken(token)],
  );
  return result.rows[0] ? toVisit(result.rows[0]) : null;
}

/** Logs one side's consent to recording (once; the first time counts). */
export async function recordConsent(db: Queryable, visitId: string, side: 'coordinator' | 'patient'): Promise<VisitRow | null> {
  const column = side === 'coordinator' ? 'coordinator_consent_at' : 'patient_consent_at';
  const result = await db.query<Record<string, any>>(
    `UPDATE visits SET ${column} = COALESCE(${column}, now()),
            status = CASE WHEN status = 'invited' THEN 'active' ELSE status END, started_at = COALESCE(started_at, now())
     WHERE id = $1 RETURNING *`,
    [visitId],
  );
  return result.rows[0] ? toVisit(result.rows[0]) : null;
}

export async function recordChunk(db: Queryable, visitId: string, index: number, sizeBytes: number): Promise<void> {
  await db.query(
    `INSERT INTO visit_chunks (visit_id, chunk_index, size_bytes) VALUES ($1, $2, $3)
     ON CONFLICT (visit_id, chunk_index) DO UPDATE SET size_bytes = EXCLUDED.size_bytes, received_at = now()`,
    [visitId, index, sizeBytes],
  );
}

export async function listChunks(db: Queryable, visitId: string): Promise<Array<{ index: number; sizeBytes: number }>> {
  const result = await db.query<{ chunk_index: number; size_bytes: number }>(`SELECT chunk_index, size_bytes FROM visit_chunks WHERE visit_id = $1 ORDER BY chunk_index`, [visitId]);
  return result.rows.map((row) => ({ index: row.chunk_index, sizeBytes: row.size_bytes }));
}

/**
 * Ends the visit and registers its assembled recording with a durable transcription job, in one transaction.
 * A second completion finds the first recording and queues nothing.
 */
export async function completeVisitRecording(
  db: Db,
  args: { visit: VisitRow; storageKey: string; contentType: string; sizeBytes: number; transcribeMaxAttempts: number },
): Promise<{ recordingId: string; duplicate: boolean }> {
  return db.transaction(async (tx) => {
    await tx.query(`UPDATE visits SET status = 'ended', ended_at = COALESCE(ended_at, now()) WHERE id = $1`, [args.visit.id]);
    const inserted = await tx.query<{ id: string }>(
      `INSERT INTO call_recordings (visit_id, patient_id, provider, provider_recording_sid, kind, status, storage_key, content_type, size_bytes)
       VALUES ($1, $2, 'switchboard', $3, 'visit', 'downloaded', $4, $5, $6)
       ON CONFLICT (provider, provider_recording_sid) DO NOTHING RETURNING id`,
      [args.visit.id, args.visit.patientId, `visit-${args.visit.id}`, args.storageKey, args.contentType, args.sizeBytes],
    );
    const row = inserted.rows[0];
    if (!row) {
      const existing = await tx.query<{ id: string }>(`SELECT id FROM call_recordings WHERE visit_id = $1`, [args.visit.id]);
      return { recordingId: existing.rows[0]!.id, duplicate: true };
    }
    await tx.query(`INSERT INTO media_jobs (recording_id, kind, max_attempts) VALUES ($1, 'transcribe', $2) ON CONFLICT (recording_id, kind) DO NOTHING`, [row.id, args.transcribeMaxAttempts]);
    await tx.query(`SELECT pg_notify($1, '')`, [MEDIA_JOBS_CHANNEL]);
    await notifyActivity(tx, args.visit.patientId, 'recording');
    return { recordingId: row.id, duplicate: false };
  });
}
