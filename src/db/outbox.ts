import type { Channel, MediaRef } from '../core/types.ts';
import type { Db, Queryable, Session } from './db.ts';
import { applyEarlyStatuses, lockProviderMessageIds } from './messages.ts';
import { notifyActivity, notifyActivityMany } from './notify.ts';
import { rerouteFailedSend, type IdentityVerdict } from './fallback.ts';
import type { ReplyRules } from '../core/reply-channel.ts';

/** Advisory-lock space for worker liveness: worker k holds pg_advisory_lock(WORKER_LOCK_SPACE, k) while it lives. */
export const WORKER_LOCK_SPACE = 0x5b0a_0003;

/**
 * Registers a worker: a fresh key, locked on a session the worker keeps for its whole life. When the process
 * dies, PostgreSQL drops the session and the lock with it, which is how other workers know its claims are orphaned.
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
  attempts: number;
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

/**
 * Claims up to `limit` sends, each the head of its patient's queue: the lowest-seq open row of that patient.
 * A row is claimable when it is pending and due, or when it is mid-send by a worker that is gone (its
 * liveness lock is free) or whose lease ran out; such a row is marked `needs_lookup`, because the provider
 * may already have it. SKIP LOCKED lets many workers claim at once without waiting on each other.
 */
export async function claimSends(db: Queryable, args: { workerKey: number; limit: number; leaseMs: number }): Promise<ClaimedSend[]> {
  const result = await db.query<{
    id: string;
    message_id: string;
    patient_id: string;
    seq: number;
    attempts: number;
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
       WHERE o.state IN ('pending', 'sending') AND o.next_attempt_at <= now()
         AND (o.state = 'pending' OR o.lease_until < now() OR NOT EXISTS (
               SELECT 1 FROM pg_locks l
               WHERE l.locktype = 'advisory' AND l.classid = $2::oid AND l.objid = o.claimed_by::oid AND l.objsubid = 2 AND l.granted))
         AND NOT EXISTS (
               SELECT 1 FROM outbox earlier
               WHERE earlier.patient_id = o.patient_id AND earlier.seq < o.seq AND earlier.state IN ('pending', 'sending'))
       ORDER BY o.next_attempt_at
       LIMIT $3
       FOR UPDATE OF o SKIP LOCKED
     ), claimed AS (
       UPDATE outbox o SET state = 'sending', attempts = o.attempts + 1, claimed_by = $1, claimed_at = now(),
              lease_until = now() + make_interval(secs => $4), needs_lookup = o.needs_lookup OR o.state = 'sending'
       FROM candidates c WHERE o.id = c.id
       RETURNING o.id, o.message_id, o.patient_id, o.seq, o.attempts, o.needs_lookup, o.created_at
     ), marked AS (
       UPDATE messages m SET status = 'sending', status_updated_at = now()
       FROM claimed WHERE m.id = claimed.message_id AND m.status = 'pending'
     )
     SELECT claimed.*, m.channel, m.address, m.body, m.media, ci.last_inbound_at, ci.opted_out
     FROM claimed JOIN messages m ON m.id = claimed.message_id LEFT JOIN channel_identities ci ON ci.id = m.identity_id`,
    [args.workerKey, WORKER_LOCK_SPACE, args.limit, args.leaseMs / 1000],
  );
  return result.rows.map((row) => ({
    outboxId: row.id,
    messageId: row.message_id,
    patientId: row.patient_id,
    seq: row.seq,
    attempts: row.attempts,
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

export type AttemptResult =
  | { outboxId: string; attempts: number; kind: 'sent'; provider: string; providerMessageId: string }
  | { outboxId: string; attempts: number; kind: 'retry'; delayMs: number; needsLookup: boolean; error: string }
  | {
      outboxId: string;
      attempts: number;
      kind: 'failed';
      provider: string | null;
      errorCode: string;
      error: string;
      /** Set when the identity, not the message, is the problem: the reply is moved to the next channel if one can deliver. */
      identity?: IdentityVerdict;
    };

/**
 * Records a batch of attempt outcomes in one transaction (one commit for many sends). Each update is fenced
 * on (claimed_by, attempts): a worker whose claim was taken over cannot overwrite the newer attempt.
 * Returns how many results were applied.
 */
export async function recordAttempts(db: Db, workerKey: number, results: readonly AttemptResult[], rules?: ReplyRules): Promise<number> {
  if (results.length === 0) return 0;
  return db.transaction(async (tx) => {
    let applied = 0;
    const sent = results.filter((r) => r.kind === 'sent');
    for (const [provider, group] of groupBy(sent, (r) => r.provider)) {
      const ids = group.map((r) => r.providerMessageId);
      await lockProviderMessageIds(tx, provider, ids);
      const done = await tx.query<{ patient_id: string }>(
        `WITH r AS (SELECT * FROM unnest($1::uuid[], $2::int[], $3::text[]) AS r(outbox_id, attempts, provider_message_id)),
         done AS (
           UPDATE outbox o SET state = 'sent', finished_at = now(), needs_lookup = false, last_error = NULL, lease_until = NULL
           FROM r WHERE o.id = r.outbox_id AND o.claimed_by = $4 AND o.attempts = r.attempts AND o.state = 'sending'
           RETURNING o.message_id, r.provider_message_id
         )
         UPDATE messages m SET status = CASE WHEN m.status IN ('pending', 'sending') THEN 'queued' ELSE m.status END,
                provider = $5, provider_message_id = done.provider_message_id, status_updated_at = now()
         FROM done WHERE m.id = done.message_id
         RETURNING m.patient_id`,
        [group.map((r) => r.outboxId), group.map((r) => r.attempts), ids, workerKey, provider],
      );
      applied += done.rowCount;
      await applyEarlyStatuses(tx, provider, ids);
      await notifyActivityMany(tx, [...new Set(done.rows.map((row) => row.patient_id))], 'status');
    }
    for (const result of results) {
      if (result.kind === 'retry') {
        const updated = await tx.query(
          `UPDATE outbox SET state = 'pending', next_attempt_at = now() + make_interval(secs => $4), needs_lookup = $5, last_error = $6, lease_until = NULL
           WHERE id = $1 AND claimed_by = $2 AND attempts = $3 AND state = 'sending'`,
          [result.outboxId, workerKey, result.attempts, result.delayMs / 1000, result.needsLookup, result.error],
        );
        applied += updated.rowCount;
      } else if (result.kind === 'failed') {
        const updated = await tx.query<{ message_id: string; patient_id: string }>(
          `UPDATE outbox SET state = 'failed', finished_at = now(), last_error = $4, lease_until = NULL
           WHERE id = $1 AND claimed_by = $2 AND attempts = $3 AND state = 'sending' RETURNING message_id, patient_id`,
          [result.outboxId, workerKey, result.attempts, result.error],
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
