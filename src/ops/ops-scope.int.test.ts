import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { backends } from '../test/databases.ts';
import { startHarness, type Harness } from '../test/harness.ts';
import { saveAlertRules } from './alert-rules.ts';
import { evaluateAlerts } from './alerts.ts';

const MIN = 60_000;

// A supervisor sees the ops API (alert banners, acknowledgements, reports) for the teams they supervise, the
// way the inbox shows them those teams' patients; an admin sees everything.
describe.each(backends())('ops API scoped to a supervisor\'s teams on $name', (backend) => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness(backend);
  });
  afterEach(async () => {
    await h.close();
  });

  async function setUp() {
    const db = h.database.db;
    const admin = await h.createCoordinator({ name: 'Root', role: 'admin' });
    const supA = await h.createCoordinator({ name: 'Sue A', role: 'supervisor' });
    const supB = await h.createCoordinator({ name: 'Sam B', role: 'supervisor' });
    const ca = await h.createCoordinator({ name: 'Cal A' });
    const cb = await h.createCoordinator({ name: 'Cy B' });
    const team = async (name: string) => (await db.query<{ id: string }>(`INSERT INTO teams (name, timezone) VALUES ($1, 'UTC') RETURNING id`, [name])).rows[0]!.id;
    const teamA = await team('Team A');
    const teamB = await team('Team B');
    for (const [teamId, coordinatorId] of [[teamA, supA.id], [teamA, ca.id], [teamB, supB.id], [teamB, cb.id]] as const) {
      await db.query(`INSERT INTO team_members (team_id, coordinator_id) VALUES ($1, $2)`, [teamId, coordinatorId]);
    }
    const patientOf = async (from: string, coordinatorId: string) => {
      expect((await h.sendSms(from, 'Can I get a refill?')).status).toBe(200);
      const id = (await db.query<{ patient_id: string }>(`SELECT patient_id FROM channel_identities WHERE address = $1`, [from])).rows[0]!.patient_id;
      await db.query(
        `INSERT INTO assignments (patient_id, coordinator_id) VALUES ($1, $2) ON CONFLICT (patient_id) DO UPDATE SET coordinator_id = $2, team_id = NULL`,
        [id, coordinatorId],
      );
      return id;
    };
    const patientA = await patientOf('+15550003001', ca.id);
    const patientB = await patientOf('+15550003002', cb.id);
    return { db, admin, supA, supB, ca, cb, teamA, teamB, patientA, patientB };
  }

  it('lists and acknowledges only the alerts of the supervisor\'s teams, plus system-wide ones', async () => {
    const { db, admin, supA, supB, ca, cb, patientA, patientB } = await setUp();
    await db.query(`UPDATE coordinators SET capacity = 0 WHERE id = $1`, [cb.id]);
    const saved = await saveAlertRules(db, { rules: [
      { id: 'patient-wait', kind: 'patient_wait', businessMinutes: 15, wallMinutes: 120 },
      { id: 'coordinator-over-capacity', kind: 'coordinator_over_capacity' },
    ] }, null);
    expect(saved.ok).toBe(true);
    const result = await evaluateAlerts(db, { now: new Date(Date.now() + 16 * MIN) });
    expect(result.transitions.map((t) => t.subject).sort()).toEqual([`coordinator:${cb.id}`, `patient:${patientA}`, `patient:${patientB}`].sort());
    // A system-wide alert (no patient, coordinator or team), as the outbox rule raises.
    await db.query(`INSERT INTO alerts (rule_id, subject, state, summary, started_at, firing_at) VALUES ('outbox-stuck', 'outbox', 'firing', 'outbox is stuck', now(), now())`);

    const subjects = async (token: string) => {
      const listed = await h.api('GET', '/api/ops/alerts', { token });
      expect(listed.status).toBe(200);
      return (listed.json.alerts as Array<{ subject: string }>).map((a) => a.subject).sort();
    };
    expect(await subjects(supA.token)).toEqual(['outbox', `patient:${patientA}`].sort());
    expect(await subjects(supB.token)).toEqual([`coordinator:${cb.id}`, 'outbox', `patient:${patientB}`].sort());
    expect(await subjects(admin.token)).toEqual([`coordinator:${cb.id}`, 'outbox', `patient:${patientA}`, `patient:${patientB}`].sort());

    const alertB = (await db.query<{ id: string }>(`SELECT id FROM alerts WHERE subject = $1`, [`patient:${patientB}`])).rows[0]!.id;
    expect((await h.api('POST', `/api/ops/alerts/${alertB}/ack`, { token: supA.token })).status).toBe(404);
    expect((await db.query(`SELECT 1 FROM alerts WHERE id = $1 AND acknowledged_at IS NULL`, [alertB])).rowCount).toBe(1);
    expect((await h.api('POST', `/api/ops/alerts/${alertB}/ack`, { token: supB.token })).status).toBe(200);

    // Reassigning the patient moves its alert with it.
    await db.query(`UPDATE assignments SET coordinator_id = $2 WHERE patient_id = $1`, [patientB, ca.id]);
    expect(await subjects(supA.token)).toContain(`patient:${patientB}`);
    expect(await subjects(supB.token)).not.toContain(`patient:${patientB}`);
  });

  it('reports only the supervisor\'s teams and their members, over the patients they may see', async () => {
    const { admin, supA, supB, ca, cb, teamA, teamB } = await setUp();
    expect((await h.api('POST', `/api/patients/${(await h.database.db.query<{ patient_id: string }>(`SELECT patient_id FROM assignments WHERE coordinator_id = $1`, [ca.id])).rows[0]!.patient_id}/messages`, { token: ca.token, body: { body: 'Sent to the pharmacy.' } })).status).toBeLessThan(300);
    expect((await h.api('POST', `/api/patients/${(await h.database.db.query<{ patient_id: string }>(`SELECT patient_id FROM assignments WHERE coordinator_id = $1`, [cb.id])).rows[0]!.patient_id}/messages`, { token: cb.token, body: { body: 'Booked for Monday.' } })).status).toBeLessThan(300);
    const today = new Date().toISOString().slice(0, 10);
    const report = async (token: string, groupBy: string) => {
      const got = await h.api('GET', `/api/ops/reports?from=${today}&to=${today}&tz=UTC&groupBy=${groupBy}`, { token });
      expect(got.status).toBe(200);
      return got.json as { scope: 'all' | { teamIds: string[] }; scopeNote: string; rows: Array<{ key: string; messagesIn: number; messagesOut: number }>; total: { messagesIn: number; messagesOut: number } };
    };

    const adminByCoordinator = await report(admin.token, 'coordinator');
    expect(adminByCoordinator.scope).toBe('all');
    expect(adminByCoordinator.rows.map((r) => r.key).sort()).toEqual([ca.id, cb.id].sort());
    expect(adminByCoordinator.total).toMatchObject({ messagesIn: 2, messagesOut: 2 });

    const aByCoordinator = await report(supA.token, 'coordinator');
    expect(aByCoordinator.scope).toEqual({ teamIds: [teamA] });
    expect(aByCoordinator.rows.map((r) => [r.key, r.messagesIn, r.messagesOut])).toEqual([[ca.id, 1, 1]]);
    expect(aByCoordinator.total).toMatchObject({ messagesIn: 1, messagesOut: 1 });
    expect((await report(supB.token, 'team')).rows.map((r) => r.key)).toEqual([teamB]);
    expect((await report(supA.token, 'channel')).rows.map((r) => [r.key, r.messagesIn])).toEqual([['sms', 1]]);
    expect((await report(admin.token, 'channel')).rows.map((r) => [r.key, r.messagesIn])).toEqual([['sms', 2]]);

    const daily = await h.api('GET', `/api/ops/reports/daily?from=${today}&to=${today}&tz=UTC`, { token: supB.token });
    expect(daily.json.days[0].total.messagesIn).toBe(1);
    expect(daily.json.scopeNote).toContain('supervised team');

    // A supervisor in no team sees no team's figures.
    const loner = await h.createCoordinator({ name: 'Lone Supervisor', role: 'supervisor' });
    const lonely = await report(loner.token, 'team');
    expect(lonely.rows).toEqual([]);
    expect(lonely.total.messagesIn).toBe(0);
  });
});
