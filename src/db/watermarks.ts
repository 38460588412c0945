import type { Channel } from '../core/types.ts';
import type { Db } from './db.ts';
import { applyDeliveryStatus, type StatusOutcome } from './messages.ts';

/**
 * A Messenger delivery or read watermark: every message we sent to `psid` before `watermark` has reached
 * `status`. Applied per message through applyDeliveryStatus, so it dedupes and only moves statuses forward.
 * "Sent before" is judged by when the message was written, which precedes its send.
 * @returns how many messages changed.
 */
export async function applyWatermark(db: Db, args: { channel: Channel; provider: string; psid: string; status: 'delivered' | 'read'; watermark: Date }): Promise<number> {
  const candidates = await db.query<{ provider_message_id: string }>(
    `SELECT provider_message_id FROM messages
     WHERE channel = $1 AND address = $2 AND direction = 'outbound' AND provider = $3 AND provider_message_id IS NOT NULL
       AND created_at <= $4 AND status IN ('queued', 'sent', 'delivered')
     ORDER BY seq`,
    [args.channel, args.psid, args.provider, args.watermark],
  );
  let applied = 0;
  for (const row of candidates.rows) {
    const outcome: StatusOutcome = await applyDeliveryStatus(db, { kind: 'status', channel: args.channel, provider: args.provider, providerMessageId: row.provider_message_id, status: args.status });
    if (outcome === 'applied') applied += 1;
  }
  return applied;
}
