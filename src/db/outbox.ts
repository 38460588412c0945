import type { Channel, MediaRef } from '../core/types.ts';
import type { Db, Queryable, Session } from './db.ts';
import { applyEarlyStatuses, lockProviderMessageIds } from './messages.ts';
import { notifyActivity, notifyActivityMany } from './notify.ts';
import { rerouteFailedSend, type IdentityVerdict } from './fallback.ts';
import type { ReplyRules } from '../core/reply-channel.ts';

/** Advisory-lock space for worker liveness: worker k holds pg_advisory_lock(WORKER_LOCK_SPACE, k) while it lives. */
export const WORKER_LOCK_SPACE = 0x5b0a_0003;

/**
 * Registers a worker: a fresh key, locked on a session the worker keeps while it can. When the process dies, or
 * PostgreSQL drops the session (a restart, a failover, pg_terminate_backend), the lock goes with it, which is how
 * other workers know its claims are orphaned. A worker whose session was lost registers again under a new key.
 */
export async function registerWorker(session: Session): Promise<number> {
  const key = (await session.query<{ key: number }>(`SELECT nextval('outbox_worker_keys')::int AS key`)).rows[0]!.key;
  await session.query(`SELECT pg_advisory_lock($1, $2)`, [WORKER_LOCK_SPACE, key]);
  return key;
}

export interface ClaimedSend {
  outboxId: string;
  messageId: string;
  patientId: string;
  seq: number;
  /** Earlier attempts that reached, or may have reached, the provider. */
  attempts: number;
  /** Identifies this claim: only an outcome carrying it is recorded. */
  fence: number;
  needsLookup: boolean;
  createdAt: Date;
  channel: Channel;
  address: string;
  body: string;
  media: MediaRef[];
  /** When the patient last wrote from the identity this is addressed to: messaging windows start there. */
  lastInboundAt: Date | null;
  /** The identity is opted out now: the relay must not send (consent may change after the reply was written). */
  optedOut: boolean;
}

// An advisory lock is per database, but pg_locks shows the whole cluster's: match the database too.
const HOLDS_WORKER_LOCK = `l.locktype = 'advisory' AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = $2::oid AND l.objsubid = 2 AND l.granted`;

/**
 * Claims up to `limit` sends, each the head of its patient's queue: the lowest-seq open row of that patient
 * (an `uncertain` row is open but never claimed: it waits for a coordinator and holds back the rows behind it).
 * Nothing is claimed unless the claiming worker holds its liveness lock right now: a worker that lost its session
 * gets nothing until it has registered again. A row is claimable when it is pending and due, or mid-send under a
 * claim that is over: its worker is gone (liveness lock free) and no send of that claim can still be in flight
 * (`quiet_after`), or its lease ran out. Such a row is marked `needs_lookup`, because the provider may have it.
 * SKIP LOCKED lets many workers claim at once without waiting on each other.
 */
export async function claimSends(db: Queryable, args: { workerKey: number; limit: number; leaseMs: number; sendWindowMs: number }): Promise<ClaimedSend[]> {
  const result = await db.query<{
    id: string;
    message_id: string;
    patient_id: string;
    seq: number;
    attempts: number;
    claim_fence: number;
    needs_lookup: boolean;
    created_at: Date;
    channel: Channel;
    address: string;
    body: string;
    media: MediaRef[];
    last_inbound_at: Date | null;
    opted_out: boolean | null;
  }>(
    `WITH candidates AS (
       SELECT o.id FROM outbox o
       WHERE EXISTS (SELECT 1 FROM pg_locks l WHERE ${HOLDS_WORKER_LOCK} AND l.objid = $1::oid)
         AND o.state IN ('pending', 'sending') AND o.next_attempt_at <= now()
         AND (o.state = 'pending' OR o.lease_until < now() OR (o.quiet_after < now() AND NOT EXISTS (
               SELECT 1 FROM pg_locks l WHERE ${HOLDS_WORKER_LOCK} AND l.objid = o.claimed_by::oid)))
         AND NOT EXISTS (
               SELECT 1 FROM outbox earlier
               WHERE earlier.patient_id = o.patient_id AND earlier.seq < o.seq AND earlier.state IN ('pending', 'sending', 'uncertain'))
       ORDER BY o.next_attempt_at
       LIMIT $3
       FOR UPDATE OF o SKIP LOCKED
     ), claimed AS (
       UPDATE outbox o SET state = 'sending', claim_fence = o.claim_fence + 1, claimed_by = $1, claimed_at = now(),
              lease_until = now() + make_interval(secs => $4), quiet_after = now() + make_interval(secs => $5),
              needs_lookup = o.needs_lookup OR o.state = 'sending'
       FROM candidates c WHERE o.id = c.id
       RETURNING o.id, o.message_id, o.patient_id, o.seq, o.attempts, o.claim_fence, o.needs_lookup, o.created_at
     ), marked AS (
       UPDATE messages m SET status = 'sending', status_updated_at = now()
       FROM claimed WHERE m.id = claimed.message_id AND m.status = 'pending'
     )
     SELECT claimed.*, m.channel, m.address, m.body, m.media, ci.last_inbound_at, ci.opted_out
     FROM claimed JOIN messages m ON m.id = claimed.message_id LEFT JOIN channel_identities ci ON ci.id = m.identity_id`,
    [args.workerKey, WORKER_LOCK_SPACE, args.limit, args.leaseMs / 1000, args.sendWindowMs / 1000],
  );
  return result.rows.map((row) => ({
    outboxId: row.id,
    messageId: row.message_id,
    patientId: row.patient_id,
    seq: row.seq,
    attempts: row.attempts,
    fence: row.claim_fence,
    needsLookup: row.needs_lookup,
    createdAt: row.created_at,
    channel: row.channel,
    address: row.address,
    body: row.body,
    media: row.media,
    lastInboundAt: row.last_inbound_at,
    optedOut: row.opted_out === true,
  }));
}

/**
 * What one claim came to. `attempted` says whether the provider was (or may have been) asked to send, which is what
 * `attempts` counts. `released`: the claim ended without an answer about the provider (our storage failed, or the
 * worker lost its liveness lock before sending): the row goes back as it was, with no backoff.
 */
export type AttemptResult = { outboxId: string; fence: number; attempted: boolean } & (
  | { kind: 'sent'; provider: string; providerMessageId: string }
  | { kind: 'retry'; delayMs: number; needsLookup: boolean; error: string }
  | { kind: 'released' }
  /** The outcome is unknown and the provider can neither be asked nor deduplicate a resend: a coordinator decides. */
  | { kind: 'uncertain'; provider: string }
  | {
      kind: 'failed';
      provider: string | null;
      errorCode: string;
      error: string;
      /** Set when the identity, not the message, is the problem: the reply is moved to the next channel if one can deliver. */
      identity?: IdentityVerdict;
    }
);

/**
 * Records a batch of attempt outcomes in one transaction (one commit for many sends). Each update is fenced on
 * (claim_fence, state = 'sending'): an outcome of a claim that was taken over cannot overwrite the newer claim.
 * Returns how many results were applied.
 */
export async function recordAttempts(db: Db, results: readonly AttemptResult[], rules?: ReplyRules): Promise<number> {
  if (results.length === 0) return 0;
  return db.transaction(async (tx) => {
    let applied = 0;
    const sent = results.filter((r) => r.kind === 'sent');
    for (const [provider, group] of groupBy(sent, (r) => r.provider)) {
      const ids = group.map((r) => r.providerMessageId);
      await lockProviderMessageIds(tx, provider, ids);
      const done = await tx.query<{ patient_id: string }>(
        `WITH r AS (SELECT * FROM unnest($1::uuid[], $2::int[], $3::text[], $4::int[]) AS r(outbox_id, fence, provider_message_id, attempted)),
         done AS (
           UPDATE outbox o SET state = 'sent', finished_at = now(), needs_lookup = false, last_error = NULL, lease_until = NULL,
                  quiet_after = NULL, attempts = o.attempts + r.attempted
           FROM r WHERE o.id = r.outbox_id AND o.claim_fence = r.fence AND o.state = 'sending'
           RETURNING o.message_id, r.provider_message_id
         )
         UPDATE messages m SET status = CASE WHEN m.status IN ('pending', 'sending') THEN 'queued' ELSE m.status END,
                provider = $5, provider_message_id = done.provider_message_id, status_updated_at = now()
         FROM done WHERE m.id = done.message_id
         RETURNING m.patient_id`,
        [group.map((r) => r.outboxId), group.map((r) => r.fence), ids, group.map((r) => (r.attempted ? 1 : 0)), provider],
      );
      applied += done.rowCount;
      await applyEarlyStatuses(tx, provider, ids);
      await notifyActivityMany(tx, [...new Set(done.rows.map((row) => row.patient_id))], 'status');
    }
    for (const result of results) {
      const attempted = result.attempted ? 1 : 0;
      if (result.kind === 'released') {
        const updated = await tx.query(
          `UPDATE outbox SET state = 'pending', lease_until = NULL, quiet_after = NULL WHERE id = $1 AND claim_fence = $2 AND state = 'sending'`,
          [result.outboxId, result.fence],
        );
        applied += updated.rowCount;
      } else if (result.kind === 'retry') {
        const updated = await tx.query(
          `UPDATE outbox SET state = 'pending', next_attempt_at = now() + make_interval(secs => $3), needs_lookup = $4, last_error = $5,
                  lease_until = NULL, quiet_after = NULL, attempts = attempts + $6
           WHERE id = $1 AND claim_fence = $2 AND state = 'sending'`,
          [result.outboxId, result.fence, result.delayMs / 1000, result.needsLookup, result.error, attempted],
        );
        applied += updated.rowCount;
      } else if (result.kind === 'uncertain') {
        const updated = await tx.query<{ message_id: string; patient_id: string }>(
          `UPDATE outbox SET state = 'uncertain', lease_until = NULL, quiet_after = NULL, attempts = attempts + $3
           WHERE id = $1 AND claim_fence = $2 AND state = 'sending' RETURNING message_id, patient_id`,
          [result.outboxId, result.fence, attempted],
        );
        const row = updated.rows[0];
        if (!row) continue;
        applied += 1;
        await tx.query(`UPDATE messages SET status = 'uncertain', provider = $2, status_updated_at = now() WHERE id = $1`, [row.message_id, result.provider]);
        await notifyActivity(tx, row.patient_id, 'status');
      } else if (result.kind === 'failed') {
        const updated = await tx.query<{ message_id: string; patient_id: string }>(
          `UPDATE outbox SET state = 'failed', finished_at = now(), last_error = $3, lease_until = NULL, quiet_after = NULL, attempts = attempts + $4
           WHERE id = $1 AND claim_fence = $2 AND state = 'sending' RETURNING message_id, patient_id`,
          [result.outboxId, result.fence, result.error, attempted],
        );
        const row = updated.rows[0];
        if (!row) continue;
        applied += 1;
        let error = result.error;
        if (result.identity) {
          const moved = await rerouteFailedSend(tx, { messageId: row.message_id, patientId: row.patient_id, verdict: result.identity, errorCode: result.errorCode, error: result.error, rules });
          if (moved.channel) continue;
          error = `${result.error} (no fallback: ${moved.reason})`;
        }
        await tx.query(
          `UPDATE messages SET status = 'failed', provider = COALESCE($2, provider), error_code = $3, error_message = $4, status_updated_at = now() WHERE id = $1`,
          [row.message_id, result.provider, result.errorCode, error],
        );
        await notifyActivity(tx, row.patient_id, 'status');
      }
    }
    return applied;
  });
}

/** Provider ids among `candidates` that already belong to some message: a lookup must not claim them twice. */
export async function knownProviderMessageIds(db: Queryable, provider: string, candidates: readonly string[]): Promise<Set<string>> {
  if (candidates.length === 0) return new Set();
  const result = await db.query<{ provider_message_id: string }>(
    `SELECT provider_message_id FROM messages WHERE provider = $1 AND provider_message_id = ANY($2::text[])`,
    [provider, candidates],
  );
  return new Set(result.rows.map((row) => row.provider_message_id));
}

function groupBy<T, K>(items: readonly T[], key: (item: T) => K): Map<K, T[]> {
  const groups = new Map<K, T[]>();
  for (const item of items) {
    const k = key(item);
    const group = groups.get(k);
    if (group) group.push(item);
    else groups.set(k, [item]);
  }
  return groups;
}
