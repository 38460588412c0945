import { parseConsentKeyword, type ConsentChange } from '../core/consent.ts';
import type { Channel } from '../core/types.ts';
import type { Db, Queryable } from './db.ts';
import { notifyActivity, notifyOutbox } from './notify.ts';
import { nextSeq } from './patients.ts';

export interface KeywordOutcome {
  change: ConsentChange | null;
  /** False when this message's keyword was already recorded (a redelivered webhook) or changed nothing. */
  recorded: boolean;
  helpReplyMessageId?: string;
}

/**
 * Applies the consent keyword an inbound message carries (STOP, START, HELP …) when it changes something: the
 * identity's state, a ledger row naming the message, a `consent` item in the patient's log and, for HELP, an automatic reply through the
 * outbox, all in one transaction. Idempotent per message (a unique index on the source), so the webhook route
 * calls it for redeliveries too: a crash between storing the message and this commit is healed by the
 * provider's retry, because the webhook was not yet answered 200. Also clears a provider's "unreachable"
 * mark: the patient just wrote from that identity.
 */
export async function applyInboundConsent(
  db: Db,
  args: { messageId: string; duplicate: boolean; channel: Channel; body: string; helpReply: string },
): Promise<KeywordOutcome> {
  const keyword = parseConsentKeyword(args.channel, args.body);
  if (!keyword) {
    // The common case costs one statement, and nothing for a redelivery.
    if (!args.duplicate) {
      await db.query(
        `UPDATE channel_identities ci SET unreachable_reason = NULL, unreachable_at = NULL
         FROM messages m WHERE m.id = $1 AND ci.id = m.identity_id AND ci.unreachable_reason IS NOT NULL`,
        [args.messageId],
      );
    }
    return { change: null, recorded: false };
  }
  const found = await db.query<{ patient_id: string; identity_id: string | null; channel: Channel; address: string }>(
    `SELECT patient_id, identity_id, channel, address FROM messages WHERE id = $1 AND direction = 'inbound'`,
    [args.messageId],
  );
  const message = found.rows[0];
  if (!message?.identity_id) return { change: null, recorded: false };
  const identityId = message.identity_id;
  return db.transaction(async (tx) => {
    // Lock the patient first, like every writer of this patient's log, then decide: a keyword that changes
    // nothing ("Yes" while opted in, a second STOP) is not a consent change and takes no log position.
    await tx.query(`SELECT 1 FROM patients WHERE id = $1 FOR UPDATE`, [message.patient_id]);
    const state = await tx.query<{ opted_out: boolean }>(`SELECT opted_out FROM channel_identities WHERE id = $1`, [identityId]);
    const optedOut = state.rows[0]?.opted_out ?? false;
    if ((keyword.change === 'opt_in' && !optedOut) || (keyword.change === 'opt_out' && optedOut)) throw new NothingToRecord();
    const ledger = await tx.query<{ id: string }>(
      `INSERT INTO consent_events (identity_id, patient_id, change, keyword, source_message_id) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (source_message_id) WHERE source_message_id IS NOT NULL DO NOTHING RETURNING id`,
      [identityId, message.patient_id, keyword.change, keyword.keyword, args.messageId],
    );
    if (!ledger.rows[0]) throw new NothingToRecord();
    const seq = await nextSeq(tx, message.patient_id, 'event');
    await tx.query(`UPDATE channel_identities SET unreachable_reason = NULL, unreachable_at = NULL WHERE id = $1`, [identityId]);
    if (keyword.change !== 'help') {
      await tx.query(`UPDATE channel_identities SET opted_out = $2, consent_changed_at = now() WHERE id = $1`, [identityId, keyword.change === 'opt_out']);
    }
    await tx.query(`INSERT INTO patient_events (patient_id, seq, kind, detail) VALUES ($1, $2, 'consent', $3)`, [
      message.patient_id,
      seq,
      JSON.stringify({ identityId, channel: message.channel, address: message.address, change: keyword.change, keyword: keyword.keyword, sourceMessageId: args.messageId }),
    ]);
    let helpReplyMessageId: string | undefined;
    if (keyword.change === 'help') {
      helpReplyMessageId = await enqueueAutomaticReply(tx, {
        patientId: message.patient_id,
        identityId,
        channel: message.channel,
        address: message.address,
        body: args.helpReply,
        reason: `automatic HELP reply on ${message.channel}, where it was asked`,
      });
    }
    await notifyActivity(tx, message.patient_id, 'consent');
    return { change: keyword.change, recorded: true, ...(helpReplyMessageId ? { helpReplyMessageId } : {}) };
  }).catch((error: unknown) => {
    if (error instanceof NothingToRecord) return { change: keyword.change, recorded: false };
    throw error;
  });
}

/** Rolls back: the keyword was already recorded (a redelivery) or changes nothing. */
class NothingToRecord extends Error {}

/**
 * Writes a reply no human wrote (`automatic = true`) and its outbox row. It takes the next log position without
 * touching `waiting_since`: the patient is still waiting for a person.
 */
export async function enqueueAutomaticReply(
  tx: Queryable,
  args: { patientId: string; identityId: string; channel: Channel; address: string; body: string; reason: string },
): Promise<string> {
  const seq = await nextSeq(tx, args.patientId, 'event');
  const inserted = await tx.query<{ id: string }>(
    `INSERT INTO messages (patient_id, seq, direction, channel, identity_id, address, body, status, channel_reason, automatic)
     VALUES ($1, $2, 'outbound', $3, $4, $5, $6, 'pending', $7, true) RETURNING id`,
    [args.patientId, seq, args.channel, args.identityId, args.address, args.body, args.reason],
  );
  const id = inserted.rows[0]!.id;
  await tx.query(`INSERT INTO outbox (message_id, patient_id, seq) VALUES ($1, $2, $3)`, [id, args.patientId, seq]);
  await notifyOutbox(tx);
  return id;
}

/** A provider reported that the address opted out (e.g. Twilio 21610): the same state as a STOP, sourced to the provider. */
export async function recordProviderOptOut(tx: Queryable, args: { identityId: string; patientId: string; code: string }): Promise<void> {
  const updated = await tx.query(`UPDATE channel_identities SET opted_out = true, consent_changed_at = now() WHERE id = $1 AND NOT opted_out`, [args.identityId]);
  if (updated.rowCount === 0) return;
  await tx.query(`INSERT INTO consent_events (identity_id, patient_id, change, keyword, source) VALUES ($1, $2, 'opt_out', $3, 'provider')`, [args.identityId, args.patientId, `provider error ${args.code}`]);
}

export interface IdentityConsent {
  id: string;
  channel: Channel;
  address: string;
  lastInboundAt: Date | null;
  createdAt: Date;
  optedOut: boolean;
  consentChangedAt: Date | null;
  unreachableReason: string | null;
  ledger: Array<{ change: ConsentChange; keyword: string; source: string; sourceMessageId: string | null; at: Date }>;
}

/** The patient's identities with their consent state and full consent ledger, for the coordinator. */
export async function listIdentityConsent(db: Queryable, patientId: string): Promise<IdentityConsent[]> {
  const identities = await db.query<{ id: string; channel: Channel; address: string; last_inbound_at: Date | null; created_at: Date; opted_out: boolean; consent_changed_at: Date | null; unreachable_reason: string | null }>(
    `SELECT id, channel, address, last_inbound_at, created_at, opted_out, consent_changed_at, unreachable_reason
     FROM channel_identities WHERE patient_id = $1 ORDER BY last_inbound_at DESC NULLS LAST, created_at DESC`,
    [patientId],
  );
  const ledger = await db.query<{ identity_id: string; change: ConsentChange; keyword: string; source: string; source_message_id: string | null; created_at: Date }>(
    `SELECT identity_id, change, keyword, source, source_message_id, created_at FROM consent_events WHERE patient_id = $1 ORDER BY created_at, id`,
    [patientId],
  );
  return identities.rows.map((row) => ({
    id: row.id,
    channel: row.channel,
    address: row.address,
    lastInboundAt: row.last_inbound_at,
    createdAt: row.created_at,
    optedOut: row.opted_out,
    consentChangedAt: row.consent_changed_at,
    unreachableReason: row.unreachable_reason,
    ledger: ledger.rows
      .filter((entry) => entry.identity_id === row.id)
      .map((entry) => ({ change: entry.change, keyword: entry.keyword, source: entry.source, sourceMessageId: entry.source_message_id, at: entry.created_at })),
  }));
}
