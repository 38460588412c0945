import type { Db, Queryable } from './db.ts';

/** NOTIFY channel for web chat streams; the payload is a patient id (never PHI). Sent inside the writing transaction. */
export const WEBCHAT_CHANNEL = 'switchboard_webchat';

/**
 * Makes sure the patient has a web chat identity (`webchat`, `patient:<id>`), so recordInbound files the page's
 * messages under this patient. Created on first use of the page, not when the link is made: until the patient
 * writes on web chat, replies keep going to the medium they actually use. False if the patient does not exist.
 */
export async function ensureWebchatIdentity(db: Queryable, patientId: string, address: string): Promise<boolean> {
  const patient = await db.query(`SELECT 1 FROM patients WHERE id = $1`, [patientId]);
  if (patient.rowCount === 0) return false;
  await db.query(
    `INSERT INTO channel_identities (patient_id, channel, address) VALUES ($1, 'webchat', $2) ON CONFLICT (channel, address) DO NOTHING`,
    [patientId, address],
  );
  return true;
}

/**
 * Appends a message to the patient's chat stream, once: a second push of the same message returns its first
 * position. The counter row lock orders pushes of one patient, so stream positions commit in increasing order
 * and a reader resuming "after N" can never skip one that commits later.
 */
export async function pushToWebchatStream(db: Db, patientId: string, messageId: string): Promise<{ streamSeq: number; pushed: boolean }> {
  return db.transaction(async (tx) => {
    await tx.query(`INSERT INTO webchat_streams (patient_id) VALUES ($1) ON CONFLICT (patient_id) DO NOTHING`, [patientId]);
    const counter = await tx.query<{ last_stream_seq: number }>(`SELECT last_stream_seq FROM webchat_streams WHERE patient_id = $1 FOR UPDATE`, [patientId]);
    const existing = await tx.query<{ stream_seq: number }>(`SELECT stream_seq FROM webchat_stream_items WHERE message_id = $1`, [messageId]);
    if (existing.rows[0]) return { streamSeq: existing.rows[0].stream_seq, pushed: false };
    const streamSeq = counter.rows[0]!.last_stream_seq + 1;
    await tx.query(`UPDATE webchat_streams SET last_stream_seq = $2 WHERE patient_id = $1`, [patientId, streamSeq]);
    await tx.query(`INSERT INTO webchat_stream_items (patient_id, stream_seq, message_id) VALUES ($1, $2, $3)`, [patientId, streamSeq, messageId]);
    await tx.query(`SELECT pg_notify($1, $2)`, [WEBCHAT_CHANNEL, patientId]);
    return { streamSeq, pushed: true };
  });
}

export interface WebchatStreamItem {
  streamSeq: number;
  messageId: string;
  direction: 'inbound' | 'outbound';
  body: string;
  at: Date;
  /** For the patient's own messages: the id their page generated, so it can match its pending bubble. */
  clientMessageId: string | null;
}

export async function readWebchatStream(db: Queryable, args: { patientId: string; afterSeq: number; limit: number }): Promise<WebchatStreamItem[]> {
  const result = await db.query<{ stream_seq: number; message_id: string; direction: 'inbound' | 'outbound'; body: string; created_at: Date; provider_message_id: string | null }>(
    `SELECT i.stream_seq, i.message_id, m.direction, m.body, m.created_at, m.provider_message_id
     FROM webchat_stream_items i JOIN messages m ON m.id = i.message_id
     WHERE i.patient_id = $1 AND i.stream_seq > $2 ORDER BY i.stream_seq LIMIT $3`,
    [args.patientId, args.afterSeq, args.limit],
  );
  return result.rows.map((row) => ({
    streamSeq: row.stream_seq,
    messageId: row.message_id,
    direction: row.direction,
    body: row.body,
    at: row.created_at,
    clientMessageId: row.direction === 'inbound' && row.provider_message_id ? (row.provider_message_id.split(':')[1] ?? null) : null,
  }));
}

/** The stream's outbound messages among `messageIds`: the only ones a page may acknowledge. */
export async function filterOwnOutbound(db: Queryable, patientId: string, messageIds: readonly string[]): Promise<string[]> {
  if (messageIds.length === 0) return [];
  const result = await db.query<{ message_id: string }>(
    `SELECT i.message_id FROM webchat_stream_items i JOIN messages m ON m.id = i.message_id
     WHERE i.patient_id = $1 AND i.message_id = ANY($2::uuid[]) AND m.direction = 'outbound'`,
    [patientId, messageIds],
  );
  return result.rows.map((row) => row.message_id);
}

/** The message and patient behind an outbox row: adapters whose provider is this database need them. */
export async function findOutboxMessage(db: Queryable, outboxId: string): Promise<{ messageId: string; patientId: string } | null> {
  const result = await db.query<{ message_id: string; patient_id: string }>(`SELECT message_id, patient_id FROM outbox WHERE id = $1`, [outboxId]);
  const row = result.rows[0];
  return row ? { messageId: row.message_id, patientId: row.patient_id } : null;
}
