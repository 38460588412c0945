/**
 * Fallback timers: "if nobody accepts or answers within N minutes, move to the next target". Each timer is a row;
 * any number of workers fire due rows, each row exactly once, because a worker locks the patient and then the
 * timer with FOR UPDATE SKIP LOCKED and closes the timer in the transaction that applies its outcome.
 */
import { escalateDecision, type RoutingDecision } from '../core/routing/index.ts';
import type { Db, Queryable } from './db.ts';
import { applyDecision, appendEvent, loadCoordinatorFacts, loadPatientState, messageFacts } from './routing.ts';

interface TimerRow {
  id: string;
  patient_id: string;
  kind: 'escalation' | 'handoff_accept';
  due_at: Date;
  started_at: Date;
  coordinator_id: string | null;
  team_id: string | null;
  handoff_id: string | null;
  decision: RoutingDecision;
}

export type TimerOutcome = 'escalated' | 'answered' | 'accepted' | 'superseded' | 'exhausted';

/** Fires every timer due at `now` (the injectable clock); returns how many this call fired. */
export async function fireDueTimers(db: Db, now: Date, limit = 100): Promise<number> {
  const due = await db.query<{ id: string; patient_id: string }>(
    `SELECT id, patient_id FROM routing_timers WHERE fired_at IS NULL AND due_at <= $1 ORDER BY due_at, id LIMIT $2`,
    [now, limit],
  );
  let fired = 0;
  for (const candidate of due.rows) {
    const done = await db.transaction(async (tx) => {
      // The patient row first, as every writer of a patient takes it: no lock-order inversion with inbound routing.
      // SKIP LOCKED: a patient busy elsewhere is simply retried on the next poll.
      const patient = await tx.query(`SELECT id FROM patients WHERE id = $1 FOR UPDATE SKIP LOCKED`, [candidate.patient_id]);
      if (patient.rowCount === 0) return false;
      const locked = await tx.query<TimerRow>(
        `SELECT * FROM routing_timers WHERE id = $1 AND fired_at IS NULL AND due_at <= $2 FOR UPDATE SKIP LOCKED`,
        [candidate.id, now],
      );
      const timer = locked.rows[0];
      if (!timer) return false;
      await fireTimer(tx, db.kind, timer, now);
      return true;
    });
    if (done) fired++;
  }
  return fired;
}

async function fireTimer(tx: Queryable, kind: Db['kind'], timer: TimerRow, now: Date): Promise<TimerOutcome> {
  const close = async (outcome: TimerOutcome) => {
    await tx.query(`UPDATE routing_timers SET fired_at = $2, outcome = $3 WHERE id = $1`, [timer.id, now, outcome]);
    return outcome;
  };
  const patient = await loadPatientState(tx, timer.patient_id);
  if (!patient) return close('superseded');
  const stillThere = timer.coordinator_id !== null ? patient.coordinatorId === timer.coordinator_id : patient.coordinatorId === null && patient.teamId === timer.team_id;
  if (!stillThere) {
    if (timer.handoff_id) await tx.query(`UPDATE handoffs SET state = 'superseded', resolved_at = $2 WHERE id = $1 AND state = 'pending'`, [timer.handoff_id, now]);
    return close('superseded');
  }

  if (timer.kind === 'escalation') {
    const answered = await tx.query(
      `SELECT 1 FROM messages WHERE patient_id = $1 AND direction = 'outbound' AND NOT automatic AND created_at >= $2 LIMIT 1`,
      [timer.patient_id, timer.started_at],
    );
    if (patient.waitingSince === null || answered.rowCount > 0) return close('answered');
  } else {
    const handoff = await tx.query<{ state: string }>(`SELECT state FROM handoffs WHERE id = $1`, [timer.handoff_id]);
    if (handoff.rows[0]?.state !== 'pending') return close(handoff.rows[0]?.state === 'accepted' ? 'accepted' : 'superseded');
    await tx.query(`UPDATE handoffs SET state = 'expired', resolved_at = $2 WHERE id = $1`, [timer.handoff_id, now]);
    await appendEvent(tx, { patientId: timer.patient_id, kind: 'handoff_expired', toCoordinatorId: timer.coordinator_id, detail: { handoffId: timer.handoff_id, teamId: timer.team_id } });
  }

  const outcome = await close('escalated');
  const escalated = await escalateNow(tx, kind, { patientId: timer.patient_id, decision: timer.decision, patient, now });
  return escalated ? outcome : close('exhausted');
}

/** Moves the patient to the decision's next fallback (the one who let it lapse is left out of pools). */
export async function escalateNow(
  tx: Queryable,
  kind: Db['kind'],
  args: { patientId: string; decision: RoutingDecision; patient: NonNullable<Awaited<ReturnType<typeof loadPatientState>>>; now: Date },
): Promise<boolean> {
  const facts = {
    patient: args.patient.facts,
    message: messageFacts({ body: '', channel: 'sms' }),
    coordinators: await loadCoordinatorFacts(tx),
    conversation: { lastAutoReplyAt: args.patient.lastAutoReplyAt },
  };
  const next = escalateDecision(args.decision, facts);
  if (!next) return false;
  await applyDecision(tx, kind, { patientId: args.patientId, messageId: null, patient: args.patient, decision: next, facts, now: args.now, decisionKind: 'escalation' });
  return true;
}
