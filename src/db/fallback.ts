import { chooseReplyIdentity, type ReachableIdentity, type ReplyRules } from '../core/reply-channel.ts';
import type { Channel } from '../core/types.ts';
import type { Queryable } from './db.ts';
import { recordProviderOptOut } from './consent.ts';
import { notifyActivity, notifyOutbox } from './notify.ts';

/** The patient's identities as the reply chooser sees them: recency, consent, reachability. */
export async function listReplyCandidates(db: Queryable, patientId: string): Promise<ReachableIdentity[]> {
  const result = await db.query<{ id: string; channel: Channel; address: string; last_inbound_at: Date | null; created_at: Date; opted_out: boolean; unreachable_reason: string | null }>(
    `SELECT id, channel, address, last_inbound_at, created_at, opted_out, unreachable_reason FROM channel_identities WHERE patient_id = $1`,
    [patientId],
  );
  return result.rows.map((row) => ({
    id: row.id,
    channel: row.channel,
    address: row.address,
    lastInboundAt: row.last_inbound_at,
    createdAt: row.created_at,
    optedOut: row.opted_out,
    unreachableReason: row.unreachable_reason,
  }));
}

/** How a permanent send failure reflects on the identity it was sent to. */
export type IdentityVerdict =
  /** The provider says the address opted out (Twilio 21610): recorded in the consent ledger. */
  | 'opted_out'
  /** The address cannot be reached (invalid number, user unavailable): marked until the patient writes again. */
  | 'unreachable'
  /** Only "not now" (a messaging window closed, or our own consent check): nothing to mark. */
  | 'not_now';

interface HistoryEntry {
  identityId?: string;
  channel: string;
  address: string;
  errorCode: string;
  error: string;
  at: string;
}

/**
 * A reply failed permanently on its identity (not because of its content): move it to the next channel that can
 * deliver, by the same rule that chose the first one, skipping every identity already tried for it. The message
 * keeps its id and `seq`, so per-patient order is unchanged; its outbox row goes back to `pending` (attempts keep
 * counting) and the next claim is a fresh send on the new channel. That is still exactly once: the failed
 * attempt was a definite "not sent" (a permanent refusal), never an unknown outcome.
 * Call inside the recording transaction after the fenced outbox update succeeded.
 * @returns the new channel, or null when no channel can deliver (the caller then fails the message).
 */
export async function rerouteFailedSend(
  tx: Queryable,
  args: { messageId: string; patientId: string; verdict: IdentityVerdict; errorCode: string; error: string; rules?: ReplyRules },
): Promise<{ channel: Channel; reason: string } | { channel: null; reason: string }> {
  const current = await tx.query<{ identity_id: string | null; channel: string; address: string; automatic: boolean; channel_history: HistoryEntry[] }>(
    `SELECT identity_id, channel, address, automatic, channel_history FROM messages WHERE id = $1 FOR UPDATE`,
    [args.messageId],
  );
  const message = current.rows[0];
  if (!message) return { channel: null, reason: 'message vanished' };
  if (message.identity_id) {
    if (args.verdict === 'opted_out') await recordProviderOptOut(tx, { identityId: message.identity_id, patientId: args.patientId, code: args.errorCode });
    if (args.verdict === 'unreachable') {
      await tx.query(`UPDATE channel_identities SET unreachable_reason = $2, unreachable_at = now() WHERE id = $1`, [message.identity_id, `${args.errorCode}: ${args.error}`.slice(0, 500)]);
    }
  }
  // An automatic reply (HELP) answers on the channel it was asked on, or not at all.
  if (message.automatic) return { channel: null, reason: 'automatic replies are not moved to another channel' };
  const history: HistoryEntry[] = [...message.channel_history];
  history.push({ channel: message.channel, address: message.address, errorCode: args.errorCode, error: args.error, at: new Date().toISOString(), ...(message.identity_id ? { identityId: message.identity_id } : {}) });
  const tried = new Set(history.flatMap((h) => (h.identityId ? [h.identityId] : [])));
  const choice = chooseReplyIdentity(await listReplyCandidates(tx, args.patientId), args.rules, tried);
  if (!choice.ok) {
    await tx.query(`UPDATE messages SET channel_history = $2 WHERE id = $1`, [args.messageId, JSON.stringify(history)]);
    return { channel: null, reason: choice.reason };
  }
  const reason = `${message.channel} failed permanently (${args.errorCode}); ${choice.reason}`;
  await tx.query(
    `UPDATE messages SET channel = $2, identity_id = $3, address = $4, channel_reason = $5, channel_history = $6, status = 'pending',
            provider = NULL, error_code = NULL, error_message = NULL, status_updated_at = now()
     WHERE id = $1`,
    [args.messageId, choice.identity.channel, choice.identity.id, choice.identity.address, reason, JSON.stringify(history)],
  );
  await tx.query(
    `UPDATE outbox SET state = 'pending', next_attempt_at = now(), needs_lookup = false, claimed_by = NULL, lease_until = NULL, finished_at = NULL, last_error = $2
     WHERE message_id = $1`,
    [args.messageId, `${args.errorCode}: ${args.error}`],
  );
  await notifyOutbox(tx);
  await notifyActivity(tx, args.patientId, 'status');
  return { channel: choice.identity.channel, reason };
}
