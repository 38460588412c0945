import type { Harness } from './harness.ts';

export interface TwoTeams {
  admin: { id: string; token: string };
  /** Team A: supervisor supA, coordinator ca with patientA; team B the same with supB, cb, patientB. */
  supA: { id: string; token: string };
  supB: { id: string; token: string };
  ca: { id: string; token: string };
  cb: { id: string; token: string };
  teamA: string;
  teamB: string;
  patientA: string;
  patientB: string;
}

/**
 * Two teams, each with a supervisor, a coordinator and one patient (arrived by SMS, assigned to the team's
 * coordinator), for checking that nobody reaches the other team's patients. Message bodies are given so a
 * test can search for words only one patient wrote.
 */
export async function seedTwoTeams(h: Harness, bodies = { a: 'Can I get a refill of my inhaler?', b: 'My insulin pump alarm keeps beeping' }): Promise<TwoTeams> {
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
  const patientOf = async (from: string, body: string, coordinatorId: string) => {
    const sent = await h.sendSms(from, body);
    if (sent.status !== 200) throw new Error(`inbound SMS refused: ${sent.status} ${sent.body}`);
    const id = (await db.query<{ patient_id: string }>(`SELECT patient_id FROM channel_identities WHERE address = $1`, [from])).rows[0]!.patient_id;
    await db.query(
      `INSERT INTO assignments (patient_id, coordinator_id) VALUES ($1, $2) ON CONFLICT (patient_id) DO UPDATE SET coordinator_id = $2, team_id = NULL`,
      [id, coordinatorId],
    );
    return id;
  };
  const patientA = await patientOf('+15550004001', bodies.a, ca.id);
  const patientB = await patientOf('+15550004002', bodies.b, cb.id);
  return { admin, supA, supB, ca, cb, teamA, teamB, patientA, patientB };
}
