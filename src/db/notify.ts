import type { Queryable } from './db.ts';

/** NOTIFY channels. Sent inside the writing transaction, so listeners hear only about committed rows. */
export const OUTBOX_CHANNEL = 'switchboard_outbox';
export const ACTIVITY_CHANNEL = 'switchboard_activity';

export async function notifyOutbox(tx: Queryable): Promise<void> {
  await tx.query(`SELECT pg_notify($1, '')`, [OUTBOX_CHANNEL]);
}

/** Tells live views which patient changed (the payload carries an id, never PHI). */
export async function notifyActivity(tx: Queryable, patientId: string, kind: string): Promise<void> {
  await tx.query(`SELECT pg_notify($1, $2)`, [ACTIVITY_CHANNEL, JSON.stringify({ patientId, kind })]);
}

/** notifyActivity for many patients in one round trip (the relay records a batch of sends per commit). */
export async function notifyActivityMany(tx: Queryable, patientIds: readonly string[], kind: string): Promise<void> {
  if (patientIds.length === 0) return;
  await tx.query(`SELECT pg_notify($1, json_build_object('patientId', id, 'kind', $3::text)::text) FROM unnest($2::text[]) AS id`, [
    ACTIVITY_CHANNEL,
    patientIds,
    kind,
  ]);
}
