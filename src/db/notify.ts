import type { Queryable } from './db.ts';

/** NOTIFY channels. Sent inside the writing transaction, so listeners hear only about committed rows. */
export const OUTBOX_CHANNEL = 'switchboard_outbox';
export const ACTIVITY_CHANNEL = 'switchboard_activity';
/** Sign-in credentials were revoked: every web process closes the live streams they opened (src/http/live.ts). */
export const SESSIONS_REVOKED_CHANNEL = 'switchboard_sessions_revoked';

/** `coordinatorId`: all of that coordinator's credentials; `credential`: one ('token:<sha256>' or 'session:<sha256>'). */
export type SessionsRevoked = { coordinatorId: string } | { credential: string };

export async function notifySessionsRevoked(tx: Queryable, revoked: SessionsRevoked): Promise<void> {
  await tx.query(`SELECT pg_notify($1, $2)`, [SESSIONS_REVOKED_CHANNEL, JSON.stringify(revoked)]);
}

export async function notifyOutbox(tx: Queryable): Promise<void> {
  await tx.query(`SELECT pg_notify($1, '')`, [OUTBOX_CHANNEL]);
}

/**
 * Tells live views which patient changed (the payload carries ids, never PHI). The change is also appended to
 * activity_feed, whose id is the resume token a reconnecting live client hands back to catch up.
 */
export async function notifyActivity(tx: Queryable, patientId: string, kind: string): Promise<void> {
  const row = await tx.query<{ id: number }>(`INSERT INTO activity_feed (patient_id, kind) VALUES ($1, $2) RETURNING id`, [patientId, kind]);
  await tx.query(`SELECT pg_notify($1, $2)`, [ACTIVITY_CHANNEL, JSON.stringify({ patientId, kind, id: row.rows[0]!.id })]);
}

/** notifyActivity for many patients in one round trip (the relay records a batch of sends per commit). */
export async function notifyActivityMany(tx: Queryable, patientIds: readonly string[], kind: string): Promise<void> {
  if (patientIds.length === 0) return;
  await tx.query(
    `WITH feed AS (INSERT INTO activity_feed (patient_id, kind) SELECT p::uuid, $3::text FROM unnest($2::text[]) AS p RETURNING id, patient_id)
     SELECT pg_notify($1, json_build_object('patientId', patient_id, 'kind', $3::text, 'id', id)::text) FROM feed`,
    [ACTIVITY_CHANNEL, patientIds, kind],
  );
}
