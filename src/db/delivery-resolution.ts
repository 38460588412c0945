import type { Db } from './db.ts';
import { notifyActivity, notifyOutbox } from './notify.ts';

/**
 * A coordinator's decision about a reply whose delivery is uncertain (docs/ARCHITECTURE.md §5):
 * `resend`: the patient did not get it, send it again; `delivered`: it arrived; `cancel`: give it up.
 */
export type DeliveryResolution = 'resend' | 'delivered' | 'cancel';

export type ResolveOutcome = { ok: true; status: 'pending' | 'sent' | 'failed' } | { ok: false; reason: 'not_found' | 'not_uncertain' };

/**
 * Settles an `uncertain` outbox row of one of the patient's outbound messages. Any decision frees the patient's
 * queue (NOTIFY wakes the relay for the replies held behind it) and tells live views. A resend goes back to the
 * head of the queue without a lookup, since the coordinator has answered the question a lookup would ask.
 */
export async function resolveUncertainDelivery(db: Db, args: { patientId: string; messageId: string; resolution: DeliveryResolution }): Promise<ResolveOutcome> {
  return db.transaction(async (tx) => {
    const found = await tx.query<{ id: string; state: string }>(
      `SELECT o.id, o.state FROM outbox o JOIN messages m ON m.id = o.message_id
       WHERE m.id = $1 AND m.patient_id = $2 AND m.direction = 'outbound' FOR UPDATE OF o`,
      [args.messageId, args.patientId],
    );
    const row = found.rows[0];
    if (!row) return { ok: false, reason: 'not_found' };
    if (row.state !== 'uncertain') return { ok: false, reason: 'not_uncertain' };

    let status: 'pending' | 'sent' | 'failed';
    if (args.resolution === 'resend') {
      status = 'pending';
      await tx.query(`UPDATE outbox SET state = 'pending', needs_lookup = false, next_attempt_at = now(), last_error = NULL WHERE id = $1`, [row.id]);
      // Back to pending, a step behind 'uncertain': a human's answer, not a provider status, so not forward-only.
      await tx.query(`UPDATE messages SET status = 'pending', status_updated_at = now() WHERE id = $1`, [args.messageId]);
    } else if (args.resolution === 'delivered') {
      status = 'sent';
      await tx.query(`UPDATE outbox SET state = 'sent', needs_lookup = false, finished_at = now(), last_error = NULL WHERE id = $1`, [row.id]);
      await tx.query(`UPDATE messages SET status = 'sent', status_updated_at = now() WHERE id = $1`, [args.messageId]);
    } else {
      status = 'failed';
      await tx.query(`UPDATE outbox SET state = 'failed', needs_lookup = false, finished_at = now(), last_error = 'cancelled by a coordinator' WHERE id = $1`, [row.id]);
      await tx.query(
        `UPDATE messages SET status = 'failed', error_code = 'cancelled', error_message = 'cancelled by a coordinator: delivery was uncertain', status_updated_at = now() WHERE id = $1`,
        [args.messageId],
      );
    }
    await notifyOutbox(tx);
    await notifyActivity(tx, args.patientId, 'status');
    return { ok: true, status };
  });
}
