import { chooseReplyIdentity, type ReplyRules } from '../core/reply-channel.ts';
import { isForwardStatus } from '../core/delivery-status.ts';
import type { DeliveryStatus, MessageStatus } from '../core/types.ts';
import type { Db, Queryable } from './db.ts';
import { nextSeq } from './patients.ts';
import { listReplyCandidates } from './fallback.ts';
import { notifyActivity, notifyOutbox } from './notify.ts';

export interface OutboundCreated {
  messageId: string;
  seq: number;
  channel: string;
  address: string;
  channelReason: string;
  status: string;
  createdAt: Date;
  /** True when an earlier request with the same idempotency key already created this message. */
  replayed: boolean;
}

/** Set when a human reply ended a wait; `firstResponse` when that wait opened a conversation. For metrics only. */
type Answered = { answered?: { waitSeconds: number; firstResponse: boolean } };

/** The wait a human reply is about to end, locking the patient row first (nextSeq would take the same lock). */
async function waitEndedByReply(tx: Queryable, patientId: string): Promise<{ waitingSince: Date; firstResponse: boolean } | undefined> {
  const found = await tx.query<{ waiting_since: Date | null; previous_human: Date | null }>(
    `SELECT p.waiting_since,
            (SELECT max(m.created_at) FROM messages m WHERE m.patient_id = p.id AND m.direction = 'outbound' AND NOT m.automatic
               AND m.created_at < p.waiting_since) AS previous_human
     FROM patients p WHERE p.id = $1 FOR UPDATE`,
    [patientId],
  );
  const row = found.rows[0];
  if (!row?.waiting_since) return undefined;
  const firstResponse = !row.previous_human || row.waiting_since.getTime() - row.previous_human.getTime() >= CONVERSATION_IDLE_MS;
  return { waitingSince: row.waiting_since, firstResponse };
}

export type CreateOutboundResult = OutboundCreated | { error: 'no_channel'; reason: string };

class IdempotencyRace extends Error {}

/**
 * Writes a reply and its outbox row in one transaction. The channel is chosen here, by the core's
 * last-used-medium rule, so the coordinator never picks one.
 */
export async function createOutbound(
  db: Db,
  args: { patientId: string; authorId: string | null; body: string; idempotencyKey?: string; automatic?: boolean; rules?: ReplyRules },
  metrics?: OutboundMetrics,
): Promise<CreateOutboundResult> {
  const created = await writeOutbound(db, args);
  if ('error' in created || created.replayed) return created;
  const { answered, ...message } = created;
  metrics?.outboundCreated(message.channel, args.automatic === true);
  if (answered) metrics?.answered(answered.waitSeconds, answered.firstResponse);
  return message;
}

/** What createOutbound reports to metrics (src/ops/metrics.ts implements it). */
export interface OutboundMetrics {
  outboundCreated(channel: string, automatic: boolean): void;
  answered(waitSeconds: number, firstResponse: boolean): void;
}

/** A conversation is idle after this long without a human message to the patient (docs/ARCHITECTURE.md §15). */
export const CONVERSATION_IDLE_MS = 24 * 3_600_000;

async function writeOutbound(
  db: Db,
  args: { patientId: string; authorId: string | null; body: string; idempotencyKey?: string; automatic?: boolean; rules?: ReplyRules },
): Promise<(OutboundCreated & Answered) | { error: 'no_channel'; reason: string }> {
  if (args.idempotencyKey) {
    const earlier = await findByIdempotencyKey(db, args.patientId, args.idempotencyKey);
    if (earlier) return earlier;
  }
  try {
    return await db.transaction(async (tx) => {
      // Consent, reachability and messaging windows decide with recency (src/core/reply-channel.ts).
      const choice = chooseReplyIdentity(await listReplyCandidates(tx, args.patientId), args.rules);
      if (!choice.ok) return { error: 'no_channel' as const, reason: choice.reason };
      // An automatic reply (routing's after-hours notice, a HELP answer) leaves the waiting clock running: nobody has answered yet.
      const automatic = args.automatic === true;
      const answered = automatic ? undefined : await waitEndedByReply(tx, args.patientId);
      const seq = await nextSeq(tx, args.patientId, automatic ? 'automatic' : 'reply');
      const inserted = await tx.query<{ id: string; created_at: Date }>(
        `INSERT INTO messages (patient_id, seq, direction, channel, identity_id, address, body, status, author_id, idempotency_key, channel_reason, automatic)
         VALUES ($1, $2, 'outbound', $3, $4, $5, $6, 'pending', $7, $8, $9, $10)
         ON CONFLICT (patient_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
         RETURNING id, created_at`,
        [args.patientId, seq, choice.identity.channel, choice.identity.id, choice.identity.address, args.body, args.authorId, args.idempotencyKey ?? null, choice.reason, automatic],
      );
      const message = inserted.rows[0];
      if (!message) throw new IdempotencyRace();
      await tx.query(`INSERT INTO outbox (message_id, patient_id, seq) VALUES ($1, $2, $3)`, [message.id, args.patientId, seq]);
      await notifyOutbox(tx);
      await notifyActivity(tx, args.patientId, 'message');
      return {
        messageId: message.id,
        seq,
        channel: choice.identity.channel,
        address: choice.identity.address,
        channelReason: choice.reason,
        status: 'pending',
        createdAt: message.created_at,
        replayed: false,
        ...(answered ? { answered: { waitSeconds: (message.created_at.getTime() - answered.waitingSince.getTime()) / 1000, firstResponse: answered.firstResponse } } : {}),
      };
    });
  } catch (error) {
    if (!(error instanceof IdempotencyRace)) throw error;
    const winner = await findByIdempotencyKey(db, args.patientId, args.idempotencyKey!);
    if (!winner) throw new Error('idempotent message disappeared', { cause: error });
    return winner;
  }
}

async function findByIdempotencyKey(db: Queryable, patientId: string, key: string): Promise<OutboundCreated | null> {
  const found = await db.query<{ id: string; seq: number; channel: string; address: string; channel_reason: string; status: string; created_at: Date }>(
    `SELECT id, seq, channel, address, channel_reason, status, created_at FROM messages WHERE patient_id = $1 AND idempotency_key = $2`,
    [patientId, key],
  );
  const row = found.rows[0];
  return row
    ? { messageId: row.id, seq: row.seq, channel: row.channel, address: row.address, channelReason: row.channel_reason, status: row.status, createdAt: row.created_at, replayed: true }
    : null;
}

/** Takes the per-message lock shared by status callbacks and the outbox's record of a provider id. */
export async function lockProviderMessageIds(tx: Queryable, provider: string, providerMessageIds: readonly string[]): Promise<void> {
  if (providerMessageIds.length === 0) return;
  // Sorted, so two transactions locking overlapping sets cannot deadlock.
  await tx.query(
    `SELECT pg_advisory_xact_lock(${PROVIDER_MESSAGE_LOCK_SPACE}, hashtext(k)) FROM (SELECT unnest($1::text[]) AS k ORDER BY 1) ids`,
    [[...new Set(providerMessageIds.map((id) => `${provider}:${id}`))].sort()],
  );
}
const PROVIDER_MESSAGE_LOCK_SPACE = 0x5b0a_0002;

export type StatusOutcome = 'applied' | 'stale' | 'duplicate' | 'unmatched';

/**
 * Records a provider's delivery status. Statuses only move forward, so a late or repeated callback changes
 * nothing. A status for an id we have not recorded yet (the callback beat our commit) is kept and applied
 * when the outbox records that id; the shared lock makes that hand-over race-free.
 */
export async function applyDeliveryStatus(db: Db, event: DeliveryStatus): Promise<StatusOutcome> {
  return db.transaction(async (tx) => {
    await lockProviderMessageIds(tx, event.provider, [event.providerMessageId]);
    const stored = await tx.query(
      `INSERT INTO delivery_events (provider, provider_message_id, status, error_code, error_message) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT DO NOTHING`,
      [event.provider, event.providerMessageId, event.status, event.errorCode ?? null, event.errorMessage ?? null],
    );
    if (stored.rowCount === 0) return 'duplicate';
    const found = await tx.query<{ id: string; patient_id: string; status: MessageStatus }>(
      `SELECT id, patient_id, status FROM messages WHERE provider = $1 AND provider_message_id = $2 AND direction = 'outbound' FOR UPDATE`,
      [event.provider, event.providerMessageId],
    );
    const message = found.rows[0];
    if (!message) return 'unmatched';
    const advanced = await advanceStatus(tx, message, event.status, event.errorCode ?? null, event.errorMessage ?? null);
    return advanced ? 'applied' : 'stale';
  });
}

/** Applies statuses that arrived before their provider ids were recorded. Call inside the recording transaction, after the lock. */
export async function applyEarlyStatuses(tx: Queryable, provider: string, providerMessageIds: readonly string[]): Promise<void> {
  if (providerMessageIds.length === 0) return;
  const early = await tx.query<{ provider_message_id: string; status: MessageStatus; error_code: string | null; error_message: string | null }>(
    `SELECT provider_message_id, status, error_code, error_message FROM delivery_events
     WHERE provider = $1 AND provider_message_id = ANY($2::text[]) ORDER BY received_at`,
    [provider, providerMessageIds],
  );
  for (const event of early.rows) {
    const found = await tx.query<{ id: string; patient_id: string; status: MessageStatus }>(
      `SELECT id, patient_id, status FROM messages WHERE provider = $1 AND provider_message_id = $2`,
      [provider, event.provider_message_id],
    );
    const message = found.rows[0];
    if (message) await advanceStatus(tx, message, event.status, event.error_code, event.error_message);
  }
}

async function advanceStatus(
  tx: Queryable,
  message: { id: string; patient_id: string; status: MessageStatus },
  status: MessageStatus,
  errorCode: string | null,
  errorMessage: string | null,
): Promise<boolean> {
  if (!isForwardStatus(message.status, status)) return false;
  await tx.query(
    `UPDATE messages SET status = $2, error_code = COALESCE($3, error_code), error_message = COALESCE($4, error_message), status_updated_at = now() WHERE id = $1`,
    [message.id, status, errorCode, errorMessage],
  );
  await notifyActivity(tx, message.patient_id, 'status');
  return true;
}
