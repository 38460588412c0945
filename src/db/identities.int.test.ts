import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PatientMergedError } from '../errors.ts';
import { isPostgresAvailable, postgresBackend, type TestDatabase } from '../test/databases.ts';
import { eventually } from '../test/harness.ts';
import { createOutbound } from './messages.ts';
import { recordInbound } from './patients.ts';

const inbound = (from: string, id: string) => ({ kind: 'inbound' as const, channel: 'sms' as const, provider: 'twilio', providerMessageId: id, from, to: '+15005550006', body: id, media: [] });

// These need a second connection holding a lock while another writer waits on it; PGlite has one connection,
// so its transactions never interleave and the race cannot happen there.
describe.skipIf(!isPostgresAvailable())('writers that wait on a patient a merge is absorbing (PostgreSQL only)', () => {
  let database: TestDatabase;
  beforeEach(async () => {
    database = await postgresBackend.create();
  });
  afterEach(async () => {
    await database.drop();
  });

  async function twoPatients() {
    const a = await recordInbound(database.db, inbound('+15550000001', 'SMa'));
    const b = await recordInbound(database.db, inbound('+15550000002', 'SMb'));
    return { a: a.patientId, b: b.patientId };
  }

  /** Holds B's row lock as a merge does, starts `write`, then "commits the merge" of B into A. */
  async function raceWithMerge<T>(a: string, b: string, write: () => Promise<T>): Promise<PromiseSettledResult<T>> {
    const session = await database.db.openSession();
    try {
      await session.query('BEGIN');
      await session.query(`SELECT 1 FROM patients WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE`, [[a, b]]);
      const pending = Promise.allSettled([write()]);
      // The writer is now blocked on B's row: wait until PostgreSQL shows it waiting on a lock.
      await eventually(async () => (await database.db.query(`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)).rowCount > 0, {
        what: 'the writer to wait on the lock',
      });
      await session.query(`UPDATE channel_identities SET patient_id = $1 WHERE patient_id = $2`, [a, b]);
      await session.query(`UPDATE patients SET merged_into = $1 WHERE id = $2`, [a, b]);
      await session.query('COMMIT');
      return (await pending)[0]!;
    } finally {
      await session.release();
    }
  }

  it('a reply to the absorbed patient fails with patient_merged instead of writing into a dead log', async () => {
    const { a, b } = await twoPatients();
    const result = await raceWithMerge(a, b, () => createOutbound(database.db, { patientId: b, authorId: null as unknown as string, body: 'late' }));
    expect(result.status).toBe('rejected');
    expect((result as PromiseRejectedResult).reason).toBeInstanceOf(PatientMergedError);
    expect(((result as PromiseRejectedResult).reason as PatientMergedError).mergedInto).toBe(a);
    const stray = await database.db.query(`SELECT 1 FROM messages WHERE body = 'late'`);
    expect(stray.rowCount).toBe(0);
  });

  it('an inbound message from the absorbed identity starts again and lands with the survivor', async () => {
    const { a, b } = await twoPatients();
    const result = await raceWithMerge(a, b, () => recordInbound(database.db, inbound('+15550000002', 'SMlate')));
    expect(result).toMatchObject({ status: 'fulfilled', value: { patientId: a, duplicate: false } });
    const row = await database.db.query<{ patient_id: string }>(`SELECT patient_id FROM messages WHERE provider_message_id = 'SMlate'`);
    expect(row.rows).toEqual([{ patient_id: a }]);
  });
});
