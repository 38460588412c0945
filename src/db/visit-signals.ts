import { appendAudit } from './audit.ts';
import type { Db, Queryable } from './db.ts';
import { recordConsent, type VisitRow } from './visits.ts';

/**
 * Video-visit signaling through the database, so the coordinator and the patient may sit on different web
 * processes. Each side's current connection is a `visit_connections` row; a message for it is a `visit_signals`
 * row plus a NOTIFY naming the connection and the row (never the body: an SDP offer can exceed NOTIFY's 8000
 * bytes). The process that holds the connection takes the row and sends it. Every NOTIFY is sent inside the
 * writing transaction, so it is heard only once the row is committed.
 */
export const VISIT_SIGNALS_CHANNEL = 'switchboard_visit_signals';

export type VisitSide = 'coordinator' | 'patient';

/** What a NOTIFY on VISIT_SIGNALS_CHANNEL tells the process holding `connectionId`. */
export type VisitSignalNotice = { connectionId: string; signalId: number } | { connectionId: string; replaced: true };

/** Signals older than this were addressed to a connection whose process went away without cleaning up. */
const SIGNAL_MAX_AGE = `interval '10 minutes'`;

const peerOf = (side: VisitSide): VisitSide => (side === 'coordinator' ? 'patient' : 'coordinator');

export function parseVisitSignalNotice(payload: string): VisitSignalNotice | null {
  let value: unknown;
  try {
    value = JSON.parse(payload);
  } catch {
    return null;
  }
  if (!value || typeof value !== 'object') return null;
  const { connectionId, signalId, replaced } = value as Record<string, unknown>;
  if (typeof connectionId !== 'string') return null;
  if (replaced === true) return { connectionId, replaced: true };
  return typeof signalId === 'number' ? { connectionId, signalId } : null;
}

/**
 * Serialises everything that can change who is connected to a visit or whether it may become ready: every join
 * and every consent of a visit runs under this lock, so of two racing on two processes the second sees the first.
 */
async function lockVisit(tx: Queryable, visitId: string): Promise<boolean> {
  const result = await tx.query(`SELECT 1 FROM visits WHERE id = $1 FOR NO KEY UPDATE`, [visitId]);
  return result.rowCount > 0;
}

async function enqueue(tx: Queryable, visitId: string, toConnection: string, body: string): Promise<void> {
  await tx.query(
    `WITH sent AS (INSERT INTO visit_signals (visit_id, to_connection, body) VALUES ($1, $2, $3) RETURNING id, to_connection)
     SELECT pg_notify($4, json_build_object('connectionId', to_connection, 'signalId', id)::text) FROM sent`,
    [visitId, toConnection, body, VISIT_SIGNALS_CHANNEL],
  );
}

/**
 * Sends `ready` to both current connections when both sides are connected and both have consented, unless this
 * very pair was already sent it. Call only under lockVisit: the check and the mark are then one step for all
 * processes, so `ready` is neither lost nor doubled when both sides arrive at once.
 */
async function readyIfComplete(tx: Queryable, visitId: string): Promise<boolean> {
  const visit = await tx.query<{ coordinator_consent_at: Date | null; patient_consent_at: Date | null }>(
    `SELECT coordinator_consent_at, patient_consent_at FROM visits WHERE id = $1`,
    [visitId],
  );
  const consents = visit.rows[0];
  if (!consents?.coordinator_consent_at || !consents.patient_consent_at) return false;
  const rows = await tx.query<{ side: VisitSide; connection_id: string; ready_peer: string | null }>(
    `SELECT side, connection_id, ready_peer FROM visit_connections WHERE visit_id = $1`,
    [visitId],
  );
  const coordinator = rows.rows.find((row) => row.side === 'coordinator');
  const patient = rows.rows.find((row) => row.side === 'patient');
  if (!coordinator || !patient) return false;
  if (coordinator.ready_peer === patient.connection_id && patient.ready_peer === coordinator.connection_id) return false;
  await tx.query(
    `UPDATE visit_connections SET ready_peer = CASE side WHEN 'coordinator' THEN $2::uuid ELSE $3::uuid END WHERE visit_id = $1`,
    [visitId, patient.connection_id, coordinator.connection_id],
  );
  const ready = JSON.stringify({ type: 'ready' });
  await enqueue(tx, visitId, coordinator.connection_id, ready);
  await enqueue(tx, visitId, patient.connection_id, ready);
  return true;
}

/**
 * Makes `connectionId` the visit's current connection for `side`, on whichever process. The connection it
 * replaces (if any) loses its undelivered signals and is sent a `replaced` notice. Sends `ready` if the visit is
 * now complete (both consents logged, the other side connected). The caller must already hold the connection
 * locally: notices for it may arrive before this returns.
 */
export async function joinVisitSignaling(db: Db, args: { visitId: string; side: VisitSide; connectionId: string }): Promise<{ replaced: string | null }> {
  return db.transaction(async (tx) => {
    if (!(await lockVisit(tx, args.visitId))) throw new Error(`visit ${args.visitId} not found`);
    const previous = await tx.query<{ connection_id: string }>(`SELECT connection_id FROM visit_connections WHERE visit_id = $1 AND side = $2`, [args.visitId, args.side]);
    const replaced = previous.rows[0]?.connection_id ?? null;
    await tx.query(
      `INSERT INTO visit_connections (visit_id, side, connection_id) VALUES ($1, $2, $3)
       ON CONFLICT (visit_id, side) DO UPDATE SET connection_id = EXCLUDED.connection_id, ready_peer = NULL, connected_at = now()`,
      [args.visitId, args.side, args.connectionId],
    );
    if (replaced) {
      await tx.query(`DELETE FROM visit_signals WHERE to_connection = $1`, [replaced]);
      await tx.query(`SELECT pg_notify($1, $2)`, [VISIT_SIGNALS_CHANNEL, JSON.stringify({ connectionId: replaced, replaced: true })]);
    }
    // Joins are rare next to signals: a good moment to drop what a dead process left behind.
    await tx.query(`DELETE FROM visit_signals WHERE created_at < now() - ${SIGNAL_MAX_AGE}`);
    await readyIfComplete(tx, args.visitId);
    return { replaced };
  });
}

/**
 * Logs one side's consent on the visit and in the audit log, in one transaction; tells the other side's current
 * connection (only if the sender is still its side's current connection) and sends `ready` if that completes
 * the visit. Returns null when the visit does not exist.
 */
export async function recordVisitConsent(
  db: Db,
  args: { visitId: string; side: VisitSide; connectionId: string; actorId: string | null; ip: string | null },
): Promise<VisitRow | null> {
  return db.transaction(async (tx) => {
    if (!(await lockVisit(tx, args.visitId))) return null;
    const visit = await recordConsent(tx, args.visitId, args.side);
    if (!visit) return null;
    await appendAudit(tx, { actorId: args.actorId, action: 'visit.consent', patientId: visit.patientId, detail: { visitId: args.visitId, side: args.side }, ip: args.ip });
    const peer = await tx.query<{ connection_id: string }>(
      `SELECT peer.connection_id FROM visit_connections peer
       WHERE peer.visit_id = $1 AND peer.side = $2
         AND EXISTS (SELECT 1 FROM visit_connections me WHERE me.visit_id = $1 AND me.side = $3 AND me.connection_id = $4)`,
      [args.visitId, peerOf(args.side), args.side, args.connectionId],
    );
    if (peer.rows[0]) await enqueue(tx, args.visitId, peer.rows[0].connection_id, JSON.stringify({ type: 'consent', side: args.side }));
    await readyIfComplete(tx, args.visitId);
    return visit;
  });
}

/**
 * Relays `body` (a JSON message, sent as is) from `fromConnection` to the other side's current connection. Nothing
 * is stored, and false is returned, when the other side is not connected or the sender has been replaced: a
 * signal is for the peer connection of the moment, and the pages only signal after `ready` (see §14).
 */
export async function relayVisitSignal(db: Queryable, args: { visitId: string; fromSide: VisitSide; fromConnection: string; body: string }): Promise<boolean> {
  const result = await db.query(
    `WITH sent AS (
       INSERT INTO visit_signals (visit_id, to_connection, body)
       SELECT $1::uuid, peer.connection_id, $4::text FROM visit_connections peer
       WHERE peer.visit_id = $1::uuid AND peer.side = $3::text
         AND EXISTS (SELECT 1 FROM visit_connections me WHERE me.visit_id = $1::uuid AND me.side = $2::text AND me.connection_id = $5::uuid)
       RETURNING id, to_connection)
     SELECT pg_notify($6, json_build_object('connectionId', to_connection, 'signalId', id)::text) FROM sent`,
    [args.visitId, args.fromSide, peerOf(args.fromSide), args.body, args.fromConnection, VISIT_SIGNALS_CHANNEL],
  );
  return result.rowCount > 0;
}

/** Takes (deletes and returns) one signal addressed to `connectionId`; null if it is gone (pruned, or its connection was replaced). */
export async function takeVisitSignal(db: Queryable, signalId: number, connectionId: string): Promise<string | null> {
  const result = await db.query<{ body: string }>(`DELETE FROM visit_signals WHERE id = $1 AND to_connection = $2 RETURNING body`, [signalId, connectionId]);
  return result.rows[0]?.body ?? null;
}

/** A connection went away: it stops being its side's connection (unless already replaced) and its undelivered signals go. */
export async function leaveVisitSignaling(db: Db, args: { visitId: string; side: VisitSide; connectionId: string }): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.query(`DELETE FROM visit_connections WHERE visit_id = $1 AND side = $2 AND connection_id = $3`, [args.visitId, args.side, args.connectionId]);
    await tx.query(`DELETE FROM visit_signals WHERE to_connection = $1`, [args.connectionId]);
  });
}
