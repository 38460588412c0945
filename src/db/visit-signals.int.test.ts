import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { backends, isPostgresAvailable, postgresBackend, type TestBackend, type TestDatabase } from '../test/databases.ts';
import { eventually } from '../test/harness.ts';
import { insertCoordinator } from './coordinators.ts';
import { recordInbound } from './patients.ts';
import {
  joinVisitSignaling,
  leaveVisitSignaling,
  parseVisitSignalNotice,
  recordVisitConsent,
  relayVisitSignal,
  takeVisitSignal,
  VISIT_SIGNALS_CHANNEL,
  type VisitSignalNotice,
} from './visit-signals.ts';
import { createVisit, recordConsent } from './visits.ts';

async function aVisit(database: TestDatabase): Promise<string> {
  const coordinator = await insertCoordinator(database.db, { email: `ada.${randomUUID()}@test.switchboard`, name: 'Ada', role: 'coordinator', passwordHash: 'x' });
  const { patientId } = await recordInbound(database.db, { kind: 'inbound', channel: 'sms', provider: 'twilio', providerMessageId: `SM${randomUUID()}`, from: '+15550001111', to: '+15005550006', body: 'hi', media: [] });
  const { visit } = await createVisit(database.db, { patientId, coordinatorId: coordinator!.id, ttlMs: 600_000 });
  return visit.id;
}

const signals = async (database: TestDatabase) =>
  (await database.db.query<{ id: number; to_connection: string; body: string }>(`SELECT id, to_connection, body FROM visit_signals ORDER BY id`)).rows;

const readyPeers = async (database: TestDatabase, visitId: string) =>
  (await database.db.query<{ side: string; connection_id: string; ready_peer: string | null }>(`SELECT side, connection_id, ready_peer FROM visit_connections WHERE visit_id = $1 ORDER BY side`, [visitId])).rows;

describe.each(backends())('visit signaling storage ($name)', (backend: TestBackend) => {
  let database: TestDatabase;
  let notices: VisitSignalNotice[];
  let unlisten: () => Promise<void>;
  beforeEach(async () => {
    database = await backend.create();
    notices = [];
    unlisten = await database.db.listen(VISIT_SIGNALS_CHANNEL, (payload) => {
      const notice = parseVisitSignalNotice(payload);
      if (notice) notices.push(notice);
    });
  });
  afterEach(async () => {
    await unlisten();
    await database.drop();
  });

  it('addresses a signal to the peer’s current connection; a replaced connection is told, loses what was queued for it and can no longer send', async () => {
    const visitId = await aVisit(database);
    const [c1, p1, p2] = [randomUUID(), randomUUID(), randomUUID()];
    expect(await joinVisitSignaling(database.db, { visitId, side: 'coordinator', connectionId: c1 })).toEqual({ replaced: null });
    expect(await joinVisitSignaling(database.db, { visitId, side: 'patient', connectionId: p1 })).toEqual({ replaced: null });

    const offer = JSON.stringify({ type: 'signal', data: { sdp: 'o'.repeat(20_000) } });
    expect(await relayVisitSignal(database.db, { visitId, fromSide: 'coordinator', fromConnection: c1, body: offer })).toBe(true);
    const [queued] = await signals(database);
    expect(queued).toMatchObject({ to_connection: p1, body: offer });
    // The NOTIFY names the connection and the row, not the body.
    await eventually(() => notices.length === 1, { what: 'the notice' });
    expect(notices[0]).toEqual({ connectionId: p1, signalId: queued!.id });

    expect(await joinVisitSignaling(database.db, { visitId, side: 'patient', connectionId: p2 })).toEqual({ replaced: p1 });
    await eventually(() => notices.length === 2, { what: 'the replaced notice' });
    expect(notices[1]).toEqual({ connectionId: p1, replaced: true });
    expect(await signals(database)).toEqual([]);
    expect(await takeVisitSignal(database.db, queued!.id, p1)).toBeNull();

    expect(await relayVisitSignal(database.db, { visitId, fromSide: 'patient', fromConnection: p1, body: '{"type":"bye"}' })).toBe(false);
    expect(await signals(database)).toEqual([]);

    expect(await relayVisitSignal(database.db, { visitId, fromSide: 'coordinator', fromConnection: c1, body: offer })).toBe(true);
    const [toNew] = await signals(database);
    expect(toNew!.to_connection).toBe(p2);
    expect(await takeVisitSignal(database.db, toNew!.id, c1)).toBeNull();
    expect(await takeVisitSignal(database.db, toNew!.id, p2)).toBe(offer);
    expect(await takeVisitSignal(database.db, toNew!.id, p2)).toBeNull();

    // The old connection leaving does not remove the new one; the new one leaving takes its queue with it.
    await leaveVisitSignaling(database.db, { visitId, side: 'patient', connectionId: p1 });
    expect((await readyPeers(database, visitId)).map((row) => row.connection_id)).toEqual([c1, p2]);
    expect(await relayVisitSignal(database.db, { visitId, fromSide: 'coordinator', fromConnection: c1, body: '{"type":"bye"}' })).toBe(true);
    await leaveVisitSignaling(database.db, { visitId, side: 'patient', connectionId: p2 });
    expect((await readyPeers(database, visitId)).map((row) => row.connection_id)).toEqual([c1]);
    expect(await signals(database)).toEqual([]);
    // Nobody on the patient side: nothing is stored for later.
    expect(await relayVisitSignal(database.db, { visitId, fromSide: 'coordinator', fromConnection: c1, body: '{"type":"bye"}' })).toBe(false);
    expect(await signals(database)).toEqual([]);
  });

  it('sends ready once per pair of connections, and only once both sides have consented', async () => {
    const visitId = await aVisit(database);
    const [c1, p1, p2] = [randomUUID(), randomUUID(), randomUUID()];
    await joinVisitSignaling(database.db, { visitId, side: 'coordinator', connectionId: c1 });
    await joinVisitSignaling(database.db, { visitId, side: 'patient', connectionId: p1 });
    expect(await signals(database)).toEqual([]);

    await recordVisitConsent(database.db, { visitId, side: 'coordinator', connectionId: c1, actorId: null, ip: '127.0.0.1' });
    expect((await signals(database)).map((row) => [row.to_connection, JSON.parse(row.body)])).toEqual([[p1, { type: 'consent', side: 'coordinator' }]]);
    const visit = await recordVisitConsent(database.db, { visitId, side: 'patient', connectionId: p1, actorId: null, ip: '127.0.0.1' });
    expect(visit?.patientConsentAt).toBeInstanceOf(Date);
    expect((await signals(database)).slice(1).map((row) => [row.to_connection, JSON.parse(row.body)])).toEqual([
      [c1, { type: 'consent', side: 'patient' }],
      [c1, { type: 'ready' }],
      [p1, { type: 'ready' }],
    ]);
    // Consent again from the same pair: forwarded, no second ready.
    await recordVisitConsent(database.db, { visitId, side: 'patient', connectionId: p1, actorId: null, ip: null });
    expect((await signals(database)).slice(4).map((row) => JSON.parse(row.body))).toEqual([{ type: 'consent', side: 'patient' }]);
    const audited = await database.db.query<{ detail: any }>(`SELECT detail FROM audit_log WHERE action = 'visit.consent' ORDER BY id`);
    expect(audited.rows.map((row) => row.detail)).toEqual([
      { visitId, side: 'coordinator' },
      { visitId, side: 'patient' },
      { visitId, side: 'patient' },
    ]);

    // A new patient connection makes a new pair: ready again, to both, at the join (consent is on the visit).
    await joinVisitSignaling(database.db, { visitId, side: 'patient', connectionId: p2 });
    const afterJoin = (await signals(database)).filter((row) => JSON.parse(row.body).type === 'ready').map((row) => row.to_connection);
    expect(afterJoin).toEqual([c1, c1, p2]);
    expect(await readyPeers(database, visitId)).toEqual([
      { side: 'coordinator', connection_id: c1, ready_peer: p2 },
      { side: 'patient', connection_id: p2, ready_peer: c1 },
    ]);
  });

  it('drops signals left for more than ten minutes when anyone next joins', async () => {
    const visitId = await aVisit(database);
    const dead = randomUUID();
    await database.db.query(`INSERT INTO visit_signals (visit_id, to_connection, body, created_at) VALUES ($1, $2, 'old', now() - interval '11 minutes'), ($1, $2, 'recent', now() - interval '9 minutes')`, [visitId, dead]);
    await joinVisitSignaling(database.db, { visitId, side: 'coordinator', connectionId: randomUUID() });
    expect((await signals(database)).map((row) => row.body)).toEqual(['recent']);
  });
});

// Needs a second connection holding the visit's row while both joins wait; PGlite has one connection, so its
// transactions never interleave and the race cannot happen there.
describe.skipIf(!isPostgresAvailable())('both sides joining at the same moment (PostgreSQL only)', () => {
  let database: TestDatabase;
  beforeEach(async () => {
    database = await postgresBackend.create();
  });
  afterEach(async () => {
    await database.drop();
  });

  it('sends ready exactly once to each, whichever join commits last', async () => {
    for (let round = 0; round < 3; round++) {
      const visitId = await aVisit(database);
      await recordConsent(database.db, visitId, 'coordinator');
      await recordConsent(database.db, visitId, 'patient');
      const [c, p] = [randomUUID(), randomUUID()];
      // Hold the visit's row so both joins queue up behind it, then let them go together.
      const session = await database.db.openSession();
      let joins: Promise<unknown>;
      try {
        await session.query('BEGIN');
        await session.query(`SELECT 1 FROM visits WHERE id = $1 FOR UPDATE`, [visitId]);
        joins = Promise.all([
          joinVisitSignaling(database.db, { visitId, side: 'coordinator', connectionId: c }),
          joinVisitSignaling(database.db, { visitId, side: 'patient', connectionId: p }),
        ]);
        await eventually(async () => (await database.db.query(`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)).rowCount === 2, {
          what: 'both joins to wait on the visit',
        });
        await session.query('COMMIT');
      } finally {
        await session.release();
      }
      await joins;
      const ready = (await signals(database)).filter((row) => JSON.parse(row.body).type === 'ready').map((row) => row.to_connection);
      expect(ready.sort(), `round ${round}`).toEqual([c, p].sort());
      await database.db.query(`DELETE FROM visit_signals`);
    }
  });
});
