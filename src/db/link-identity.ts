import { normalizeAddress } from '../channels/address.ts';
import type { Channel } from '../core/types.ts';
import type { Db } from './db.ts';

/**
 * Minimal: attaches a not-yet-known (channel, address) to an existing patient, address normalised (E.164 for
 * phones). It refuses an address that already belongs to anyone; moving identities between patients and merging
 * are the identity-linking API's job (issue 3, built separately), which should replace this.
 */
export async function attachIdentity(db: Db, args: { patientId: string; channel: Channel; address: string }): Promise<{ identityId: string } | { error: 'address_taken' }> {
  const address = normalizeAddress(args.channel, args.address);
  const inserted = await db.query<{ id: string }>(
    `INSERT INTO channel_identities (patient_id, channel, address) VALUES ($1, $2, $3) ON CONFLICT (channel, address) DO NOTHING RETURNING id`,
    [args.patientId, args.channel, address],
  );
  return inserted.rows[0] ? { identityId: inserted.rows[0].id } : { error: 'address_taken' };
}
