import type { Channel, InboundMessage } from '../core/types.ts';
import { storableInbound } from '../core/text.ts';
import type { ReachableIdentity } from '../core/reply-channel.ts';
import type { Db, Queryable } from './db.ts';
import { notifyActivity } from './notify.ts';
import { routeInbound } from './routing.ts';
import { canSeePatient } from './visibility.ts';
import { PatientMergedError } from '../errors.ts';
import { readCallItems, type CallTimelineItem, type VisitTimelineItem } from './calls.ts';

/** Takes the next position in the patient's log. The row lock it takes serialises all writers of one patient. */
export async function nextSeq(tx: Queryable, patientId: string, change: 'inbound' | 'reply' | 'automatic' | 'event'): Promise<number> {
  // Only a human reply stops the waiting clock; an automatic reply (after-hours notice, HELP answer) does not.
  const waiting =
    change === 'inbound' ? 'COALESCE(waiting_since, now())' : change === 'reply' ? 'NULL' : 'waiting_since';
  const touched = change === 'event' ? 'last_message_at' : 'now()';
  const result = await tx.query<{ last_seq: number }>(
    `UPDATE patients SET last_seq = last_seq + 1, waiting_since = ${waiting}, last_message_at = ${touched}
     WHERE id = $1 AND merged_into IS NULL RETURNING last_seq`,
    [patientId],
  );
  const row = result.rows[0];
  if (!row) {
    // A writer that waited for this row's lock while a merge absorbed the patient lands here, not in a dead log.
    const merged = await tx.query<{ merged_into: string | null }>(`SELECT merged_into FROM patients WHERE id = $1`, [patientId]);
    if (merged.rows[0]) throw new PatientMergedError(patientId, merged.rows[0].merged_into);
    throw new Error(`patient ${patientId} vanished inside its own transaction`);
  }
  return row.last_seq;
}

export interface InboundResult {
  duplicate: boolean;
  patientId: string;
  messageId: string;
  isNewPatient: boolean;
}

class DuplicateInbound extends Error {}

/**
 * Stores one inbound message exactly once: the first delivery of a provider message id creates it (and the
 * patient, for a new address); every redelivery finds it and changes nothing.
 */
export async function recordInbound(db: Db, event: InboundMessage, metrics?: InboundMetrics): Promise<InboundResult> {
  // Every channel's inbound message passes here, so none can store (or fail on) NUL or a lone surrogate.
  const storable = storableInbound(event);
  const result = await storeInbound(db, storable.event, storable.removed);
  if (result.duplicate) metrics?.duplicateDropped('inbound');
  else metrics?.inboundStored(event.channel);
  return result;
}

/** What recordInbound reports to metrics (src/ops/metrics.ts implements it). */
export interface InboundMetrics {
  inboundStored(channel: string): void;
  duplicateDropped(kind: 'inbound'): void;
}

async function storeInbound(db: Db, event: InboundMessage, removedCharacters: number): Promise<InboundResult> {
  // A merge or an undo that moves this identity while we wait for the patient's lock makes us start again,
  // so the message lands in the log its identity belongs to now.
  for (let attempt = 1; ; attempt++) {
    try {
      return await recordInboundOnce(db, event, removedCharacters);
    } catch (error) {
      if (!(error instanceof IdentityMoved || error instanceof PatientMergedError) || attempt >= 5) throw error;
    }
  }
}

class IdentityMoved extends Error {}

async function recordInboundOnce(db: Db, event: InboundMessage, removedCharacters: number): Promise<InboundResult> {
  const existing = await findInbound(db, event);
  if (existing) return existing;
  try {
    return await db.transaction(async (tx) => {
      const { patientId, identityId, isNewPatient } = await findOrCreateIdentity(tx, event.channel, event.from);
      const seq = await nextSeq(tx, patientId, 'inbound');
      const owner = await tx.query<{ patient_id: string }>(`SELECT patient_id FROM channel_identities WHERE id = $1`, [identityId]);
      if (owner.rows[0]?.patient_id !== patientId) throw new IdentityMoved();
      const inserted = await tx.query<{ id: string }>(
        `INSERT INTO messages (patient_id, seq, direction, channel, identity_id, address, provider, provider_message_id, body, media, status, removed_characters)
         VALUES ($1, $2, 'inbound', $3, $4, $5, $6, $7, $8, $9, 'received', $10)
         ON CONFLICT (provider, provider_message_id) WHERE provider_message_id IS NOT NULL DO NOTHING RETURNING id`,
        [patientId, seq, event.channel, identityId, event.from, event.provider, event.providerMessageId, event.body, JSON.stringify(event.media), removedCharacters],
      );
      // A concurrent delivery of the same message won the race: roll back so the log has no gap.
      if (!inserted.rows[0]) throw new DuplicateInbound();
      await tx.query(`UPDATE channel_identities SET last_inbound_at = now() WHERE id = $1`, [identityId]);
      // Every inbound message gets exactly one routing decision, in the transaction that stored it.
      await routeInbound(tx, db.kind, { patientId, messageId: inserted.rows[0].id, message: event, now: new Date() });
      await notifyActivity(tx, patientId, 'message');
      return { duplicate: false, patientId, messageId: inserted.rows[0].id, isNewPatient };
    });
  } catch (error) {
    if (!(error instanceof DuplicateInbound)) throw error;
    const winner = await findInbound(db, event);
    if (!winner) throw new Error('duplicate inbound message disappeared', { cause: error });
    return winner;
  }
}

async function findInbound(db: Queryable, event: InboundMessage): Promise<InboundResult | null> {
  const found = await db.query<{ id: string; patient_id: string }>(
    `SELECT id, patient_id FROM messages WHERE provider = $1 AND provider_message_id = $2`,
    [event.provider, event.providerMessageId],
  );
  const row = found.rows[0];
  return row ? { duplicate: true, patientId: row.patient_id, messageId: row.id, isNewPatient: false } : null;
}

/** The patient behind (channel, address), created (provisionally, race-safe) when there is none. Also used by calls. */
export async function findOrCreateIdentity(
  tx: Queryable,
  channel: Channel,
  address: string,
): Promise<{ patientId: string; identityId: string; isNewPatient: boolean }> {
  const found = await tx.query<{ id: string; patient_id: string }>(`SELECT id, patient_id FROM channel_identities WHERE channel = $1 AND address = $2`, [channel, address]);
  if (found.rows[0]) return { patientId: found.rows[0].patient_id, identityId: found.rows[0].id, isNewPatient: false };
  const patient = await tx.query<{ id: string }>(`INSERT INTO patients DEFAULT VALUES RETURNING id`);
  const patientId = patient.rows[0]!.id;
  const identity = await tx.query<{ id: string }>(
    `INSERT INTO channel_identities (patient_id, channel, address) VALUES ($1, $2, $3) ON CONFLICT (channel, address) DO NOTHING RETURNING id`,
    [patientId, channel, address],
  );
  if (identity.rows[0]) return { patientId, identityId: identity.rows[0].id, isNewPatient: true };
  // Another first message from the same address committed meanwhile: use its patient, drop ours.
  await tx.query(`DELETE FROM patients WHERE id = $1`, [patientId]);
  const winner = await tx.query<{ id: string; patient_id: string }>(`SELECT id, patient_id FROM channel_identities WHERE channel = $1 AND address = $2`, [channel, address]);
  return { patientId: winner.rows[0]!.patient_id, identityId: winner.rows[0]!.id, isNewPatient: false };
}

export async function listReachableIdentities(db: Queryable, patientId: string): Promise<ReachableIdentity[]> {
  const result = await db.query<{ id: string; channel: Channel; address: string; last_inbound_at: Date | null; created_at: Date }>(
    `SELECT id, channel, address, last_inbound_at, created_at FROM channel_identities WHERE patient_id = $1`,
    [patientId],
  );
  return result.rows.map((row) => ({ id: row.id, channel: row.channel, address: row.address, lastInboundAt: row.last_inbound_at, createdAt: row.created_at }));
}

export interface Caller {
  id: string;
  role: 'coordinator' | 'supervisor' | 'admin';
}

/**
 * Whether the caller may see this patient: their own, their teams' queues, the teams they supervise; admins
 * everyone (the rule is `visibleSql` in visibility.ts). Answering "no" and "no such patient" alike keeps existence hidden.
 */
export async function canAccessPatient(db: Queryable, caller: Caller, patientId: string): Promise<boolean> {
  return canSeePatient(db, caller, patientId);
}

export interface InboxRow {
  patientId: string;
  displayName: string | null;
  waitingSince: Date | null;
  lastMessageAt: Date | null;
  lastMessage: { body: string; direction: string; channel: string; status: string; at: Date } | null;
  replyChannel: string | null;
  coordinatorId: string | null;
}

export async function listInbox(db: Queryable, args: { coordinatorId: string | null; limit: number }): Promise<InboxRow[]> {
  const result = await db.query<{
    id: string;
    display_name: string | null;
    waiting_since: Date | null;
    last_message_at: Date | null;
    coordinator_id: string | null;
    body: string | null;
    direction: string | null;
    channel: string | null;
    status: string | null;
    created_at: Date | null;
    reply_channel: string | null;
  }>(
    `SELECT p.id, p.display_name, p.waiting_since, p.last_message_at, a.coordinator_id,
            lm.body, lm.direction, lm.channel, lm.status, lm.created_at, ri.channel AS reply_channel
     FROM patients p
     LEFT JOIN assignments a ON a.patient_id = p.id
     LEFT JOIN LATERAL (SELECT body, direction, channel, status, created_at FROM messages m
                        WHERE m.patient_id = p.id ORDER BY m.seq DESC LIMIT 1) lm ON true
     LEFT JOIN LATERAL (SELECT channel FROM channel_identities ci WHERE ci.patient_id = p.id
                        ORDER BY ci.last_inbound_at DESC NULLS LAST, ci.created_at DESC LIMIT 1) ri ON true
     WHERE ($1::uuid IS NULL OR a.coordinator_id = $1) AND p.merged_into IS NULL
     ORDER BY p.waiting_since ASC NULLS LAST, p.last_message_at DESC NULLS LAST, p.id
     LIMIT $2`,
    [args.coordinatorId, args.limit],
  );
  return result.rows.map((row) => ({
    patientId: row.id,
    displayName: row.display_name,
    waitingSince: row.waiting_since,
    lastMessageAt: row.last_message_at,
    coordinatorId: row.coordinator_id,
    replyChannel: row.reply_channel,
    lastMessage: row.body === null ? null : { body: row.body, direction: row.direction!, channel: row.channel!, status: row.status!, at: row.created_at! },
  }));
}

export type TimelineItem =
  | {
      type: 'message';
      seq: number;
      id: string;
      at: Date;
      direction: 'inbound' | 'outbound';
      channel: string;
      address: string;
      body: string;
      media: unknown;
      status: string;
      errorCode: string | null;
      errorMessage: string | null;
      authorId: string | null;
      channelReason: string | null;
      /** Channels tried before a permanent failure moved this reply (see src/db/fallback.ts). */
      channelHistory: unknown;
      automatic: boolean;
      provider: string | null;
      providerMessageId: string | null;
    }
  | {
      type: 'event';
      seq: number;
      id: string;
      at: Date;
      kind: string;
      actorId: string | null;
      fromCoordinatorId: string | null;
      toCoordinatorId: string | null;
      note: string | null;
      detail: unknown;
    }
  | CallTimelineItem
  | VisitTimelineItem;

/** One page of the patient's log, oldest first, ending before `beforeSeq` (the newest page when omitted). */
export async function readTimeline(db: Queryable, args: { patientId: string; beforeSeq?: number; limit: number }): Promise<TimelineItem[]> {
  const params = [args.patientId, args.beforeSeq ?? null, args.limit];
  const [messages, events, calls] = await Promise.all([
    db.query<Record<string, any>>(
      `SELECT * FROM messages WHERE patient_id = $1 AND ($2::int IS NULL OR seq < $2) ORDER BY seq DESC LIMIT $3`,
      params,
    ),
    db.query<Record<string, any>>(
      `SELECT * FROM patient_events WHERE patient_id = $1 AND ($2::int IS NULL OR seq < $2) ORDER BY seq DESC LIMIT $3`,
      params,
    ),
    readCallItems(db, args),
  ]);
  const items: TimelineItem[] = [
    ...calls,
    ...messages.rows.map(
      (m): TimelineItem => ({
        type: 'message',
        seq: m.seq,
        id: m.id,
        at: m.created_at,
        direction: m.direction,
        channel: m.channel,
        address: m.address,
        body: m.body,
        media: m.media,
        status: m.status,
        errorCode: m.error_code,
        errorMessage: m.error_message,
        authorId: m.author_id,
        channelReason: m.channel_reason,
        channelHistory: m.channel_history ?? [],
        automatic: m.automatic ?? false,
        provider: m.provider,
        providerMessageId: m.provider_message_id,
      }),
    ),
    ...events.rows.map(
      (e): TimelineItem => ({
        type: 'event',
        seq: e.seq,
        id: e.id,
        at: e.created_at,
        kind: e.kind,
        actorId: e.actor_id,
        fromCoordinatorId: e.from_coordinator_id,
        toCoordinatorId: e.to_coordinator_id,
        note: e.note,
        detail: e.detail,
      }),
    ),
  ];
  return items.sort((a, b) => b.seq - a.seq).slice(0, args.limit).reverse();
}
