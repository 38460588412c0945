import type { CoordinatorRole } from '../core/types.ts';
import type { Queryable } from './db.ts';

/**
 * Who may see a patient, as one SQL predicate over the patient's assignment row `a` (NULL columns when the
 * patient has no assignment): admins see everyone; anyone sees patients assigned to them and the unclaimed
 * queue of every team they belong to; a team's supervisors (team_members.role = 'supervisor', or a member whose
 * global role is supervisor) see every patient of that team: its queue and its members' patients.
 * `caller` and `role` are SQL expressions (parameters or columns), never user input.
 */
export function visibleSql(caller: string, role: string, a = 'a'): string {
  return `(${role} = 'admin'
    OR ${a}.coordinator_id = ${caller}
    OR (${a}.coordinator_id IS NULL AND ${a}.team_id IN (SELECT tm.team_id FROM team_members tm WHERE tm.coordinator_id = ${caller}))
    OR ${a}.team_id IN ${supervisedTeamsSql(caller, role)}
    OR ${a}.coordinator_id IN (SELECT m.coordinator_id FROM team_members m WHERE m.team_id IN ${supervisedTeamsSql(caller, role)}))`;
}

/** The teams the caller supervises (as a team supervisor, or as a global supervisor who is a member); admins are handled by the callers. */
export function supervisedTeamsSql(caller: string, role: string): string {
  return `(SELECT tm.team_id FROM team_members tm WHERE tm.coordinator_id = ${caller} AND (tm.role = 'supervisor' OR ${role} = 'supervisor'))`;
}

/**
 * Which alerts a supervisor sees (alias `al` over alerts): an alert about a patient follows that patient's
 * visibility now (visibleSql); one about a coordinator is seen by that coordinator's team supervisors; one
 * about a team by its supervisors; system-wide alerts (outbox, delivery rate, a channel's silence) carry no
 * patient, coordinator or team and no PHI, and every supervisor sees them. Admins see all.
 */
export function alertVisibleSql(caller: string, role: string, al = 'al'): string {
  const teams = supervisedTeamsSql(caller, role);
  return `(${role} = 'admin'
    OR (${al}.patient_id IS NULL AND ${al}.coordinator_id IS NULL AND ${al}.team_id IS NULL)
    OR (${al}.patient_id IS NOT NULL AND EXISTS (SELECT 1 FROM patients vp LEFT JOIN assignments va ON va.patient_id = vp.id
                                                   WHERE vp.id = ${al}.patient_id AND ${visibleSql(caller, role, 'va')}))
    OR (${al}.patient_id IS NULL AND ${al}.coordinator_id IS NOT NULL
        AND (${al}.coordinator_id = ${caller} OR ${al}.coordinator_id IN (SELECT m.coordinator_id FROM team_members m WHERE m.team_id IN ${teams})))
    OR (${al}.patient_id IS NULL AND ${al}.coordinator_id IS NULL AND ${al}.team_id IN ${teams}))`;
}

export interface Viewer {
  id: string;
  role: CoordinatorRole;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Whether the viewer may see the patient. "No" and "no such patient" (or one merged into another) are the same answer. */
export async function canSeePatient(db: Queryable, viewer: Viewer, patientId: string): Promise<boolean> {
  if (!UUID.test(patientId)) return false;
  const result = await db.query(
    `SELECT 1 FROM patients p LEFT JOIN assignments a ON a.patient_id = p.id
     WHERE p.id = $3 AND p.merged_into IS NULL AND ${visibleSql('$1::uuid', '$2::text')}`,
    [viewer.id, viewer.role, patientId],
  );
  return result.rowCount > 0;
}

/** Of these viewers, the ids that may see the patient now (one query per live event, however many viewers). */
export async function viewersOfPatient(db: Queryable, patientId: string, viewerIds: readonly string[]): Promise<Set<string>> {
  if (viewerIds.length === 0 || !UUID.test(patientId)) return new Set();
  const result = await db.query<{ id: string }>(
    `SELECT c.id FROM coordinators c
     JOIN patients p ON p.id = $1
     LEFT JOIN assignments a ON a.patient_id = p.id
     WHERE c.id = ANY($2::uuid[]) AND p.merged_into IS NULL AND ${visibleSql('c.id', 'c.role')}`,
    [patientId, [...new Set(viewerIds)]],
  );
  return new Set(result.rows.map((row) => row.id));
}

/** Every patient id the viewer may see now (a live connection's starting set, to tell it when one leaves). */
export async function visiblePatientIds(db: Queryable, viewer: Viewer): Promise<string[]> {
  const result = await db.query<{ id: string }>(
    `SELECT p.id FROM patients p LEFT JOIN assignments a ON a.patient_id = p.id WHERE p.merged_into IS NULL AND ${visibleSql('$1::uuid', '$2::text')}`,
    [viewer.id, viewer.role],
  );
  return result.rows.map((row) => row.id);
}

/**
 * Whether the viewer may act on this coordinator as their supervisor (set their status, move their patients,
 * hand patients to them in bulk): themselves, or a member of a team they supervise. Admins: anyone.
 */
export async function supervisesCoordinator(db: Queryable, viewer: Viewer, coordinatorId: string): Promise<boolean> {
  if (viewer.role === 'admin' || viewer.id === coordinatorId) return true;
  if (!UUID.test(coordinatorId)) return false;
  const result = await db.query(
    `SELECT 1 FROM team_members m WHERE m.coordinator_id = $3::uuid AND m.team_id IN ${supervisedTeamsSql('$1::uuid', '$2::text')}`,
    [viewer.id, viewer.role, coordinatorId],
  );
  return result.rowCount > 0;
}

/** Whether the viewer supervises this team (a team supervisor, or a global supervisor who is a member). Admins: every team. */
export async function supervisesTeam(db: Queryable, viewer: Viewer, teamId: string): Promise<boolean> {
  if (viewer.role === 'admin') return true;
  if (!UUID.test(teamId)) return false;
  const result = await db.query(`SELECT 1 WHERE $3::uuid IN ${supervisedTeamsSql('$1::uuid', '$2::text')}`, [viewer.id, viewer.role, teamId]);
  return result.rowCount > 0;
}
