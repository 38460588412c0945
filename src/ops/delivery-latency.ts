import type { Queryable } from '../db/db.ts';

/** When the provider accepted a message: the outbox row's finish time, recorded with the provider's id. */
export async function acceptedAt(db: Queryable, provider: string, providerMessageId: string): Promise<Date | null> {
  const found = await db.query<{ finished_at: Date | null }>(
    `SELECT o.finished_at FROM messages m JOIN outbox o ON o.message_id = m.id
     WHERE m.provider = $1 AND m.provider_message_id = $2 AND o.state = 'sent'`,
    [provider, providerMessageId],
  );
  return found.rows[0]?.finished_at ?? null;
}
