/**
 * Moving patients between people by hand: handoffs (to a coordinator or a team queue, with a pinned note and an
 * optional accept step), claims from team queues, bulk reassignment, and coordinator status with its returns.
 * Every change locks the patient row first (as inbound routing does) and writes a timeline item; the waiting
 * clock is never touched.
 */
import type { FallbackTarget, RoutingDecision } from '../core/routing/index.ts';
import type { Db, Queryable } from './db.ts';
import { notifyActivity } from './notify.ts';
import { EVERYONE_TEAM_ID, loadActiveRules } from './routing-rules.ts';
import { appendEvent, closeOpenTimer, loadPatientState, setAssignment, startTimer } from './routing.ts';
import { escalateNow } from './routing-timers.ts';

export class HandoffRefused extends Error {
  constructor(
    readonly code: 'unknown_coordinator' | 'unknown_team' | 'already_assigned' | 'not_pending' | 'not_yours' | 'not_queued' | 'not_a_member' | 'not_found',
    message: string,
  ) {
    super(message);
  }
}

async function lockPatient(tx: Queryable, patientId: string): Promise<void> {
  const found = await tx.query(`SELECT id FROM patients WHERE id = $1 FOR UPDATE`, [patientId]);
  if (found.rowCount === 0) throw new HandoffRefused('not_found', 'patient not found');
}

async function requireCoordinator(tx: Queryable, id: string): Promise<{ fallback_target: unknown }> {
  const found = await tx.query<{ fallback_target: unknown }>(`SELECT fallback_target FROM coordinators WHERE id = $1`, [id]);
  if (!found.rows[0]) throw new HandoffRefused('unknown_coordinator', `coordinator ${id} does not exist`);
  return found.rows[0];
}

async function requireTeam(tx: Queryable, id: string): Promise<void> {
  const found = await tx.query(`SELECT 1 FROM teams WHERE id = $1`, [id]);
  if (found.rowCount === 0) throw new HandoffRefused('unknown_team', `team ${id} does not exist`);
}

/** Checks a fallback target names things that exist. */
export async function checkTarget(db: Queryable, target: FallbackTarget): Promise<void> {
  if (target.kind === 'coordinator') await requireCoordinator(db, target.coordinatorId);
  else await requireTeam(db, target.teamId);
}

export interface HandoffRequest {
  patientId: string;
  actorId: string;
  toCoordinatorId?: string;
  toTeamId?: string;
  note: string;
  /** The receiving coordinator must accept (a team handoff is accepted by whoever claims it). */
  requireAccept: boolean;
  /** For an accept step, or for a team handoff nobody claims: escalate after this long. */
  acceptWithinMinutes?: number;
  /** Where it goes when declined or not accepted in time; default: the receiver's own fallback, else the default queue. */
  fallback?: FallbackTarget;
  now: Date;
}

export interface HandoffResult {
  handoffId: string;
  seq: number;
  fromCoordinatorId: string | null;
  toCoordinatorId: string | null;
  toTeamId: string | null;
  state: 'pending' | 'completed';
  acceptBy: Date | null;
}

export const DEFAULT_ACCEPT_MINUTES = 15;

export async function handOffPatient(db: Db, request: HandoffRequest): Promise<HandoffResult> {
  return db.transaction(async (tx) => {
    await lockPatient(tx, request.patientId);
    const receiver = request.toCoordinatorId ? await requireCoordinator(tx, request.toCoordinatorId) : null;
    if (request.toTeamId) await requireTeam(tx, request.toTeamId);
    const current = await loadPatientState(tx, request.patientId);
    const fromCoordinatorId = current?.coordinatorId ?? null;
    if (request.toCoordinatorId && fromCoordinatorId === request.toCoordinatorId) {
      throw new HandoffRefused('already_assigned', 'the patient is already assigned to that coordinator');
    }
    await supersedePending(tx, request.patientId, request.now);
    await closeOpenTimer(tx, request.patientId, request.now, 'superseded');

    const toCoordinatorId = request.toCoordinatorId ?? null;
    const toTeamId = toCoordinatorId ? null : (request.toTeamId ?? null);
    await setAssignment(tx, { patientId: request.patientId, coordinatorId: toCoordinatorId, teamId: toTeamId, now: request.now });

    const pending = toTeamId !== null || request.requireAccept;
    const timed = toCoordinatorId ? request.requireAccept : request.acceptWithinMinutes !== undefined;
    const minutes = request.acceptWithinMinutes ?? DEFAULT_ACCEPT_MINUTES;
    const inserted = await tx.query<{ id: string }>(
      `INSERT INTO handoffs (patient_id, actor_id, from_coordinator_id, to_coordinator_id, to_team_id, note, requires_accept, state, fallbacks, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id`,
      [request.patientId, request.actorId, fromCoordinatorId, toCoordinatorId, toTeamId, request.note, pending, pending ? 'pending' : 'completed', JSON.stringify(request.fallback ? [request.fallback] : []), request.now],
    );
    const handoffId = inserted.rows[0]!.id;
    const acceptBy = timed ? new Date(request.now.getTime() + minutes * 60_000) : null;
    // The note is pinned: the receiver sees it at the top of the thread until the next handoff.
    const seq = await appendEvent(tx, {
      patientId: request.patientId,
      kind: 'handoff',
      actorId: request.actorId,
      fromCoordinatorId,
      toCoordinatorId,
      note: request.note,
      detail: { handoffId, pinned: true, toTeamId, requiresAccept: pending, acceptBy: acceptBy?.toISOString() ?? null },
    });

    if (timed) {
      const queueTeamId = toTeamId ?? (await loadActiveRules(tx)).ruleSet.defaultRule.queueTeamId;
      const fallback: FallbackTarget =
        request.fallback ?? parseTarget(receiver?.fallback_target) ?? { kind: 'team', teamId: queueTeamId, strategy: 'least_loaded' };
      await startTimer(tx, {
        patientId: request.patientId,
        kind: 'handoff_accept',
        decision: handoffDecision({ toCoordinatorId, toTeamId, queueTeamId, fallback, minutes }),
        now: request.now,
        coordinatorId: toCoordinatorId,
        teamId: toTeamId,
        handoffId,
      });
    }
    await notifyActivity(tx, request.patientId, 'handoff');
    return { handoffId, seq, fromCoordinatorId, toCoordinatorId, toTeamId, state: pending ? ('pending' as const) : ('completed' as const), acceptBy };
  });
}

function parseTarget(value: unknown): FallbackTarget | null {
  if (typeof value !== 'object' || value === null) return null;
  const v = value as Record<string, unknown>;
  if (v.kind === 'coordinator' && typeof v.coordinatorId === 'string') return { kind: 'coordinator', coordinatorId: v.coordinatorId };
  if (v.kind === 'team' && typeof v.teamId === 'string') return value as FallbackTarget;
  return null;
}

/** A handoff's accept step expressed as a routing decision, so escalation reuses the engine's fallback logic. */
function handoffDecision(args: { toCoordinatorId: string | null; toTeamId: string | null; queueTeamId: string; fallback: FallbackTarget; minutes: number }): RoutingDecision {
  return {
    ruleSetVersion: null,
    ruleId: 'handoff',
    ruleName: 'Handoff not accepted in time',
    assignment: args.toCoordinatorId ? { kind: 'coordinator', coordinatorId: args.toCoordinatorId } : { kind: 'queue', teamId: args.toTeamId ?? args.queueTeamId },
    keptCurrent: false,
    returnWhenBack: false,
    returnToCoordinatorId: null,
    queueTeamId: args.queueTeamId,
    fallbacks: [{ target: args.fallback, afterMinutes: args.minutes }],
    actions: [],
    explanation: { rulesEvaluated: 0, conditions: [], resolution: [], suppressedActions: [] },
  };
}

async function supersedePending(tx: Queryable, patientId: string, now: Date): Promise<void> {
  await tx.query(`UPDATE handoffs SET state = 'superseded', resolved_at = $2 WHERE patient_id = $1 AND state = 'pending'`, [patientId, now]);
}

interface PendingHandoff {
  id: string;
  patient_id: string;
  to_coordinator_id: string | null;
  to_team_id: string | null;
  state: string;
}

async function lockPendingHandoff(tx: Queryable, handoffId: string): Promise<PendingHandoff> {
  const found = await tx.query<PendingHandoff>(`SELECT id, patient_id, to_coordinator_id, to_team_id, state FROM handoffs WHERE id = $1`, [handoffId]);
  const handoff = found.rows[0];
  if (!handoff) throw new HandoffRefused('not_found', 'handoff not found');
  await lockPatient(tx, handoff.patient_id);
  const again = await tx.query<PendingHandoff>(`SELECT id, patient_id, to_coordinator_id, to_team_id, state FROM handoffs WHERE id = $1`, [handoffId]);
  return again.rows[0]!;
}

export async function findHandoff(db: Queryable, handoffId: string): Promise<PendingHandoff | null> {
  if (!/^[0-9a-f-]{36}$/i.test(handoffId)) return null;
  const found = await db.query<PendingHandoff>(`SELECT id, patient_id, to_coordinator_id, to_team_id, state FROM handoffs WHERE id = $1`, [handoffId]);
  return found.rows[0] ?? null;
}

/** The receiving coordinator accepts; the pending timer stops. */
export async function acceptHandoff(db: Db, args: { handoffId: string; coordinatorId: string; now: Date }): Promise<{ patientId: string }> {
  return db.transaction(async (tx) => {
    const handoff = await lockPendingHandoff(tx, args.handoffId);
    if (handoff.to_coordinator_id !== args.coordinatorId) throw new HandoffRefused('not_yours', 'only the receiving coordinator can accept; a team handoff is claimed');
    if (handoff.state !== 'pending') throw new HandoffRefused('not_pending', `the handoff is ${handoff.state}`);
    await tx.query(`UPDATE handoffs SET state = 'accepted', resolved_at = $2, resolved_by = $3 WHERE id = $1`, [handoff.id, args.now, args.coordinatorId]);
    await tx.query(`UPDATE routing_timers SET fired_at = $2, outcome = 'accepted' WHERE handoff_id = $1 AND fired_at IS NULL`, [handoff.id, args.now]);
    await appendEvent(tx, { patientId: handoff.patient_id, kind: 'handoff_accepted', actorId: args.coordinatorId, toCoordinatorId: args.coordinatorId, detail: { handoffId: handoff.id } });
    await notifyActivity(tx, handoff.patient_id, 'handoff');
    return { patientId: handoff.patient_id };
  });
}

/** The receiving coordinator declines: the handoff escalates to its fallback at once. */
export async function declineHandoff(
  db: Db,
  args: { handoffId: string; coordinatorId: string; reason?: string; now: Date },
): Promise<{ patientId: string; coordinatorId: string | null; teamId: string | null }> {
  return db.transaction(async (tx) => {
    const handoff = await lockPendingHandoff(tx, args.handoffId);
    if (handoff.to_coordinator_id !== args.coordinatorId) throw new HandoffRefused('not_yours', 'only the receiving coordinator can decline');
    if (handoff.state !== 'pending') throw new HandoffRefused('not_pending', `the handoff is ${handoff.state}`);
    await tx.query(`UPDATE handoffs SET state = 'declined', resolved_at = $2, resolved_by = $3 WHERE id = $1`, [handoff.id, args.now, args.coordinatorId]);
    const timer = await tx.query<{ decision: RoutingDecision }>(
      `UPDATE routing_timers SET fired_at = $2, outcome = 'declined' WHERE handoff_id = $1 AND fired_at IS NULL RETURNING decision`,
      [handoff.id, args.now],
    );
    await appendEvent(tx, { patientId: handoff.patient_id, kind: 'handoff_declined', actorId: args.coordinatorId, fromCoordinatorId: args.coordinatorId, note: args.reason ?? null, detail: { handoffId: handoff.id } });
    const decision = timer.rows[0]?.decision;
    const patient = await loadPatientState(tx, handoff.patient_id);
    if (decision && patient) await escalateNow(tx, db.kind, { patientId: handoff.patient_id, decision, patient, now: args.now });
    const after = await loadPatientState(tx, handoff.patient_id);
    return { patientId: handoff.patient_id, coordinatorId: after?.coordinatorId ?? null, teamId: after?.teamId ?? null };
  });
}

/** Whether the coordinator belongs to the team (everyone with role coordinator belongs to Everyone). */
export async function isTeamMember(db: Queryable, coordinatorId: string, teamId: string): Promise<boolean> {
  if (teamId === EVERYONE_TEAM_ID) {
    return (await db.query(`SELECT 1 FROM coordinators WHERE id = $1 AND role = 'coordinator'`, [coordinatorId])).rowCount > 0;
  }
  return (await db.query(`SELECT 1 FROM team_members WHERE team_id = $1 AND coordinator_id = $2`, [teamId, coordinatorId])).rowCount > 0;
}

/** A member takes a patient waiting in their team's queue (supervisors and admins may claim from any queue). */
export async function claimFromQueue(db: Db, args: { patientId: string; coordinatorId: string; anyTeam: boolean; now: Date }): Promise<{ teamId: string }> {
  return db.transaction(async (tx) => {
    await lockPatient(tx, args.patientId);
    const state = await loadPatientState(tx, args.patientId);
    if (!state || state.coordinatorId !== null || state.teamId === null) throw new HandoffRefused('not_queued', 'the patient is not waiting in a team queue');
    if (!args.anyTeam && !(await isTeamMember(tx, args.coordinatorId, state.teamId))) throw new HandoffRefused('not_a_member', 'only members of the team can claim from its queue');
    await setAssignment(tx, { patientId: args.patientId, coordinatorId: args.coordinatorId, teamId: null, now: args.now });
    await tx.query(`UPDATE handoffs SET state = 'accepted', resolved_at = $2, resolved_by = $3 WHERE patient_id = $1 AND state = 'pending'`, [args.patientId, args.now, args.coordinatorId]);
    await closeOpenTimer(tx, args.patientId, args.now, 'claimed');
    await appendEvent(tx, { patientId: args.patientId, kind: 'claimed', actorId: args.coordinatorId, toCoordinatorId: args.coordinatorId, detail: { teamId: state.teamId } });
    await notifyActivity(tx, args.patientId, 'assignment');
    return { teamId: state.teamId };
  });
}

export async function listTeamQueue(db: Queryable, teamId: string): Promise<Array<{ patientId: string; waitingSince: Date | null; queuedAt: Date; priority: number }>> {
  const result = await db.query<{ patient_id: string; waiting_since: Date | null; assigned_at: Date; priority: number }>(
    `SELECT a.patient_id, p.waiting_since, a.assigned_at, p.priority FROM assignments a JOIN patients p ON p.id = a.patient_id
     WHERE a.team_id = $1 AND a.coordinator_id IS NULL ORDER BY p.priority DESC, p.waiting_since ASC NULLS LAST, a.patient_id`,
    [teamId],
  );
  return result.rows.map((row) => ({ patientId: row.patient_id, waitingSince: row.waiting_since, queuedAt: row.assigned_at, priority: row.priority }));
}

/** Moves every patient of one coordinator (e.g. absent) to a coordinator or a team queue; one transaction per patient. */
export async function reassignAll(
  db: Db,
  args: { fromCoordinatorId: string; toCoordinatorId?: string; toTeamId?: string; actorId: string; note: string | null; now: Date },
): Promise<string[]> {
  await db.transaction(async (tx) => {
    await requireCoordinator(tx, args.fromCoordinatorId);
    if (args.toCoordinatorId) await requireCoordinator(tx, args.toCoordinatorId);
    if (args.toTeamId) await requireTeam(tx, args.toTeamId);
  });
  const patients = await db.query<{ patient_id: string }>(`SELECT patient_id FROM assignments WHERE coordinator_id = $1 ORDER BY patient_id`, [args.fromCoordinatorId]);
  const moved: string[] = [];
  for (const { patient_id: patientId } of patients.rows) {
    const didMove = await db.transaction(async (tx) => {
      await lockPatient(tx, patientId);
      const state = await loadPatientState(tx, patientId);
      if (state?.coordinatorId !== args.fromCoordinatorId) return false;
      const toCoordinatorId = args.toCoordinatorId ?? null;
      await setAssignment(tx, { patientId, coordinatorId: toCoordinatorId, teamId: toCoordinatorId ? null : (args.toTeamId ?? null), now: args.now });
      await supersedePending(tx, patientId, args.now);
      await closeOpenTimer(tx, patientId, args.now, 'superseded');
      await appendEvent(tx, {
        patientId,
        kind: 'reassigned',
        actorId: args.actorId,
        fromCoordinatorId: args.fromCoordinatorId,
        toCoordinatorId,
        note: args.note,
        detail: { toTeamId: toCoordinatorId ? null : args.toTeamId, bulk: true },
      });
      await notifyActivity(tx, patientId, 'assignment');
      return true;
    });
    if (didMove) moved.push(patientId);
  }
  return moved;
}

export interface StatusChange {
  coordinatorId: string;
  status: 'available' | 'away' | 'out_of_office';
  fallbackTarget?: FallbackTarget | null;
  returnWhenBack?: boolean;
  actorId: string;
  now: Date;
}

/**
 * Sets a coordinator's status (and optionally where their new messages go meanwhile). Coming back as available
 * returns every patient a fallback covered with "return when back".
 */
export async function setCoordinatorStatus(db: Db, change: StatusChange): Promise<{ previous: string; returned: string[] }> {
  const previous = await db.transaction(async (tx) => {
    const found = await tx.query<{ status: string }>(`SELECT status FROM coordinators WHERE id = $1 FOR UPDATE`, [change.coordinatorId]);
    if (!found.rows[0]) throw new HandoffRefused('unknown_coordinator', `coordinator ${change.coordinatorId} does not exist`);
    if (change.fallbackTarget) await checkTarget(tx, change.fallbackTarget);
    await tx.query(
      `UPDATE coordinators SET status = $2, is_available = ($2 = 'available'), status_changed_at = $3,
         fallback_target = CASE WHEN $4::boolean THEN $5::jsonb ELSE fallback_target END,
         return_when_back = COALESCE($6, return_when_back)
       WHERE id = $1`,
      [change.coordinatorId, change.status, change.now, change.fallbackTarget !== undefined, change.fallbackTarget ? JSON.stringify(change.fallbackTarget) : null, change.returnWhenBack ?? null],
    );
    return found.rows[0].status;
  });
  const returned: string[] = [];
  if (change.status === 'available') {
    const covered = await db.query<{ patient_id: string }>(`SELECT patient_id FROM assignments WHERE return_to_coordinator_id = $1 ORDER BY patient_id`, [change.coordinatorId]);
    for (const { patient_id: patientId } of covered.rows) {
      const back = await db.transaction(async (tx) => {
        await lockPatient(tx, patientId);
        const state = await tx.query<{ coordinator_id: string | null; return_to_coordinator_id: string | null }>(
          `SELECT coordinator_id, return_to_coordinator_id FROM assignments WHERE patient_id = $1`,
          [patientId],
        );
        const row = state.rows[0];
        if (row?.return_to_coordinator_id !== change.coordinatorId) return false;
        await setAssignment(tx, { patientId, coordinatorId: change.coordinatorId, teamId: null, now: change.now });
        await supersedePending(tx, patientId, change.now);
        await closeOpenTimer(tx, patientId, change.now, 'superseded');
        await appendEvent(tx, { patientId, kind: 'returned', actorId: change.actorId, fromCoordinatorId: row.coordinator_id, toCoordinatorId: change.coordinatorId, detail: { reason: 'coordinator is back' } });
        await notifyActivity(tx, patientId, 'assignment');
        return true;
      });
      if (back) returned.push(patientId);
    }
  }
  return { previous, returned };
}
