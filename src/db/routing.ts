/**
 * Routing in the database: gathers the facts the pure engine (`src/core/routing`) decides on, and applies its
 * decision — assignment, timeline item, actions, fallback timer — in the transaction that stored the message.
 */
import {
  describeDecision,
  routeMessage,
  type Action,
  type CompiledRuleSet,
  type CoordinatorFact,
  type FallbackTarget,
  type MessageFacts,
  type PatientFacts,
  type RoutingDecision,
  type RoutingFacts,
} from '../core/routing/index.ts';
import { FallbackTargetSchema } from '../core/routing/rules.ts';
import type { Channel } from '../core/types.ts';
import type { Db, Queryable } from './db.ts';
import { createOutbound } from './messages.ts';
import { notifyActivity } from './notify.ts';
import { nextSeq } from './patients.ts';
import { EVERYONE_TEAM_ID, loadActiveRules } from './routing-rules.ts';

// Taken (after the patient row) whenever a decision would hand a patient to a new coordinator, so two
// concurrent decisions never both count the same free slot.
const ASSIGN_LOCK = 0x5b0a_0005;

export const PRIORITY_VALUES = { low: -1, normal: 0, high: 1, urgent: 2 } as const;

// ---- facts -------------------------------------------------------------------------------------------------

type CoordinatorFactRow = {
  id: string;
  status: CoordinatorFact['status'];
  capacity: number;
  skills: string[];
  languages: string[];
  last_assigned_at: Date | null;
  fallback_target: unknown;
  return_when_back: boolean;
  load: number;
  team_ids: string[] | null;
};

/** Every routable coordinator (role `coordinator`) with load and teams; everyone is in the Everyone team. */
export async function loadCoordinatorFacts(db: Queryable): Promise<CoordinatorFact[]> {
  const result = await db.query<CoordinatorFactRow>(
    `SELECT c.id, c.status, c.capacity, c.skills, c.languages, c.last_assigned_at, c.fallback_target, c.return_when_back,
            (SELECT count(*)::int FROM assignments a WHERE a.coordinator_id = c.id) AS load,
            (SELECT array_agg(tm.team_id::text ORDER BY tm.team_id) FROM team_members tm WHERE tm.coordinator_id = c.id) AS team_ids
     FROM coordinators c WHERE c.role = 'coordinator' ORDER BY c.id`,
  );
  return result.rows.map((row) => ({
    id: row.id,
    status: row.status,
    load: Number(row.load),
    capacity: row.capacity,
    skills: row.skills ?? [],
    languages: row.languages ?? [],
    teamIds: [...(row.team_ids ?? []), EVERYONE_TEAM_ID],
    lastAssignedAt: row.last_assigned_at,
    fallbackTarget: parseFallbackTarget(row.fallback_target),
    returnWhenBack: row.return_when_back,
  }));
}

export function parseFallbackTarget(value: unknown): FallbackTarget | null {
  const parsed = FallbackTargetSchema.safeParse(value);
  return parsed.success ? parsed.data : null;
}

export interface PatientState {
  facts: PatientFacts;
  coordinatorId: string | null;
  teamId: string | null;
  lastAutoReplyAt: Date | null;
  waitingSince: Date | null;
}

export async function loadPatientState(db: Queryable, patientId: string): Promise<PatientState | null> {
  const result = await db.query<{
    id: string;
    program: string | null;
    language: string | null;
    region: string | null;
    timezone: string | null;
    risk_tier: string | null;
    tags: string[];
    attributes: Record<string, unknown>;
    last_auto_reply_at: Date | null;
    waiting_since: Date | null;
    coordinator_id: string | null;
    team_id: string | null;
  }>(
    `SELECT p.id, p.program, p.language, p.region, p.timezone, p.risk_tier, p.tags, p.attributes, p.last_auto_reply_at,
            p.waiting_since, a.coordinator_id, a.team_id
     FROM patients p LEFT JOIN assignments a ON a.patient_id = p.id WHERE p.id = $1`,
    [patientId],
  );
  const row = result.rows[0];
  if (!row) return null;
  return {
    facts: {
      id: row.id,
      program: row.program,
      language: row.language,
      state: row.region,
      timeZone: row.timezone,
      // Stored as text; a numeric tier compares as a number so `gte 2` works.
      riskTier: row.risk_tier !== null && /^-?\d+(\.\d+)?$/.test(row.risk_tier) ? Number(row.risk_tier) : row.risk_tier,
      tags: row.tags ?? [],
      attributes: row.attributes ?? {},
      currentCoordinatorId: row.coordinator_id,
    },
    coordinatorId: row.coordinator_id,
    teamId: row.team_id,
    lastAutoReplyAt: row.last_auto_reply_at,
    waitingSince: row.waiting_since,
  };
}

export function messageFacts(message: { body: string; channel: string; media?: readonly unknown[] }): MessageFacts {
  return { text: message.body, channel: message.channel, hasMedia: (message.media?.length ?? 0) > 0 };
}

/** What a decision is stored with: the patient's and message's facts (coordinators are summarised by the explanation). */
function decidingFacts(facts: RoutingFacts): Record<string, unknown> {
  return { patient: facts.patient, message: { ...facts.message, text: clip(facts.message.text) }, conversation: facts.conversation ?? {} };
}

function clip(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

// ---- inbound -----------------------------------------------------------------------------------------------

/** A Db whose transaction() joins the caller's transaction, so createOutbound writes inside it. */
export function joinTransaction(tx: Queryable, kind: Db['kind']): Db {
  return {
    kind,
    query: (sql, params) => tx.query(sql, params),
    exec: (sql) => tx.exec(sql),
    transaction: (fn) => fn(tx),
    listen: () => Promise.reject(new Error('listen inside a transaction')),
    openSession: () => Promise.reject(new Error('openSession inside a transaction')),
    close: async () => {},
  };
}

export interface InboundRouting {
  patientId: string;
  /** Null for a contact that is no message (a phone call). */
  messageId: string | null;
  message: { body: string; channel: Channel; media: readonly unknown[] };
  now: Date;
}

/**
 * Routes one stored inbound message: exactly one decision (the unique index on `routing_decisions.message_id`
 * makes a second impossible), applied in the caller's transaction, after the patient row was locked by nextSeq.
 */
export async function routeInbound(tx: Queryable, kind: Db['kind'], args: InboundRouting): Promise<RoutingDecision> {
  const active = await loadActiveRules(tx);
  const patient = await loadPatientState(tx, args.patientId);
  if (!patient) throw new Error(`patient ${args.patientId} vanished while routing`);
  const facts = async (): Promise<RoutingFacts> => ({
    patient: patient.facts,
    message: messageFacts(args.message),
    coordinators: await loadCoordinatorFacts(tx),
    conversation: { lastAutoReplyAt: patient.lastAutoReplyAt },
  });
  const held = await heldByTeamHandoff(tx, patient);
  // A patient without a coordinator will most likely get one: lock at once rather than decide twice.
  const lockedEarly = patient.coordinatorId === null && held === null;
  if (lockedEarly) await tx.query(`SELECT pg_advisory_xact_lock($1)`, [ASSIGN_LOCK]);
  let routingFacts = await facts();
  let decision = holdForHandoff(active.compiled, routeMessage(active.compiled, routingFacts, args.now), held);
  if (!lockedEarly && decision.assignment.kind === 'coordinator' && !decision.keptCurrent) {
    // Decide again under the lock, on loads nobody else can change until we commit.
    await tx.query(`SELECT pg_advisory_xact_lock($1)`, [ASSIGN_LOCK]);
    routingFacts = await facts();
    decision = holdForHandoff(active.compiled, routeMessage(active.compiled, routingFacts, args.now), held);
  }
  await applyDecision(tx, kind, { patientId: args.patientId, messageId: args.messageId, patient, decision, facts: routingFacts, now: args.now, decisionKind: 'inbound' });
  return decision;
}

/** The team whose queue holds the patient because of a pending handoff to it, or null. */
async function heldByTeamHandoff(db: Queryable, patient: PatientState | null): Promise<string | null> {
  if (!patient || patient.coordinatorId !== null || patient.teamId === null) return null;
  const pending = await db.query(`SELECT 1 FROM handoffs WHERE patient_id = $1 AND state = 'pending' AND to_team_id = $2`, [patient.facts.id, patient.teamId]);
  return pending.rowCount > 0 ? patient.teamId : null;
}

/**
 * A patient handed off to a team stays in that team's queue until a member claims them, as a patient stays with
 * their coordinator: only a rule with `overrideAssignment` moves them. The rule's actions still apply.
 */
export function holdForHandoff(compiled: CompiledRuleSet, decision: RoutingDecision, heldTeamId: string | null): RoutingDecision {
  if (heldTeamId === null) return decision;
  const rule = compiled.ruleSet.rules.find((r) => r.id === decision.ruleId);
  if (rule?.overrideAssignment) return decision;
  return {
    ...decision,
    assignment: { kind: 'queue', teamId: heldTeamId },
    keptCurrent: false,
    returnWhenBack: false,
    returnToCoordinatorId: null,
    queueTeamId: heldTeamId,
    fallbacks: [],
    explanation: { ...decision.explanation, resolution: [...decision.explanation.resolution, { step: 'queue', teamId: heldTeamId }] },
  };
}

/** What `dry-run` and tests ask: the decision the engine would make now, with nothing written. */
export async function previewDecision(
  db: Queryable,
  args: { compiled?: CompiledRuleSet; patientId?: string; patient?: PatientFacts; message: MessageFacts; now: Date; lastAutoReplyAt?: Date | null },
): Promise<{ decision: RoutingDecision; facts: RoutingFacts }> {
  const compiled = args.compiled ?? (await loadActiveRules(db)).compiled;
  const stored = args.patientId ? await loadPatientState(db, args.patientId) : null;
  const facts: RoutingFacts = {
    patient: stored?.facts ?? args.patient ?? {},
    message: args.message,
    coordinators: await loadCoordinatorFacts(db),
    conversation: { lastAutoReplyAt: stored?.lastAutoReplyAt ?? args.lastAutoReplyAt ?? null },
  };
  return { decision: holdForHandoff(compiled, routeMessage(compiled, facts, args.now, { explain: 'all' }), await heldByTeamHandoff(db, stored)), facts };
}

// ---- applying a decision -----------------------------------------------------------------------------------

export interface ApplyArgs {
  patientId: string;
  messageId: string | null;
  patient: Pick<PatientState, 'coordinatorId' | 'teamId'>;
  decision: RoutingDecision;
  facts: RoutingFacts;
  now: Date;
  decisionKind: 'inbound' | 'escalation';
}

/** Writes a decision: assignment, decision row, timeline item, actions, and the fallback timer. */
export async function applyDecision(tx: Queryable, kind: Db['kind'], args: ApplyArgs): Promise<{ decisionId: string; changed: boolean }> {
  const { decision, patientId, now } = args;
  const a = decision.assignment;
  const toCoordinatorId = a.kind === 'coordinator' ? a.coordinatorId : null;
  const toTeamId = a.kind === 'queue' ? a.teamId : null;
  const changed = toCoordinatorId !== args.patient.coordinatorId || (toCoordinatorId === null && toTeamId !== args.patient.teamId);
  if (changed) {
    await setAssignment(tx, { patientId, coordinatorId: toCoordinatorId, teamId: toTeamId, returnToCoordinatorId: decision.returnToCoordinatorId, now });
  }

  const inserted = await tx.query<{ id: string }>(
    `INSERT INTO routing_decisions (patient_id, message_id, kind, rule_set_version, rule_id, assignment, decision, facts, decided_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id`,
    [patientId, args.messageId, args.decisionKind, decision.ruleSetVersion, decision.ruleId, JSON.stringify(a), JSON.stringify(decision), JSON.stringify(decidingFacts(args.facts)), now],
  );
  const decisionId = inserted.rows[0]!.id;
  await appendEvent(tx, {
    patientId,
    kind: args.decisionKind === 'inbound' ? 'routed' : 'escalated',
    fromCoordinatorId: args.patient.coordinatorId,
    toCoordinatorId,
    now,
    detail: {
      decisionId,
      messageId: args.messageId,
      ruleSetVersion: decision.ruleSetVersion,
      ruleId: decision.ruleId,
      ruleName: decision.ruleName,
      assignment: a,
      keptCurrent: decision.keptCurrent,
      changed,
      returnToCoordinatorId: decision.returnToCoordinatorId,
      actions: decision.actions.map((action) => action.type),
      suppressedActions: decision.explanation.suppressedActions.map((s) => ({ type: s.action.type, reason: s.reason })),
      explanation: describeDecision(decision),
    },
  });

  for (const action of decision.actions) await performAction(tx, kind, { patientId, decisionId, ruleId: decision.ruleId, action, now });

  if (changed) {
    // Whoever a pending handoff was waiting on no longer has the patient.
    await tx.query(`UPDATE handoffs SET state = 'superseded', resolved_at = $2 WHERE patient_id = $1 AND state = 'pending'`, [patientId, now]);
    await closeOpenTimer(tx, patientId, now, 'superseded');
  }
  if (decision.fallbacks.length > 0) {
    const open = await tx.query(`SELECT 1 FROM routing_timers WHERE patient_id = $1 AND fired_at IS NULL`, [patientId]);
    // A kept assignment keeps its running timer: a new message never restarts the clock.
    if (open.rowCount === 0) await startTimer(tx, { patientId, kind: 'escalation', decision, now, coordinatorId: toCoordinatorId, teamId: toTeamId, handoffId: null });
  }
  await notifyActivity(tx, patientId, 'routing');
  return { decisionId, changed };
}

export async function setAssignment(
  tx: Queryable,
  args: { patientId: string; coordinatorId: string | null; teamId: string | null; returnToCoordinatorId?: string | null; now: Date },
): Promise<void> {
  await tx.query(
    `INSERT INTO assignments (patient_id, coordinator_id, team_id, assigned_at, return_to_coordinator_id) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (patient_id) DO UPDATE SET coordinator_id = EXCLUDED.coordinator_id, team_id = EXCLUDED.team_id,
       assigned_at = EXCLUDED.assigned_at, return_to_coordinator_id = EXCLUDED.return_to_coordinator_id`,
    [args.patientId, args.coordinatorId, args.coordinatorId ? null : args.teamId, args.now, args.returnToCoordinatorId ?? null],
  );
  if (args.coordinatorId) await tx.query(`UPDATE coordinators SET last_assigned_at = $2 WHERE id = $1`, [args.coordinatorId, args.now]);
}

export async function appendEvent(
  tx: Queryable,
  args: { patientId: string; kind: string; actorId?: string | null; fromCoordinatorId?: string | null; toCoordinatorId?: string | null; note?: string | null; detail: Record<string, unknown>; now?: Date },
): Promise<number> {
  const seq = await nextSeq(tx, args.patientId, 'event');
  await tx.query(
    `INSERT INTO patient_events (patient_id, seq, kind, actor_id, from_coordinator_id, to_coordinator_id, note, detail)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
    [args.patientId, seq, args.kind, args.actorId ?? null, args.fromCoordinatorId ?? null, args.toCoordinatorId ?? null, args.note ?? null, JSON.stringify(args.detail)],
  );
  return seq;
}

async function performAction(tx: Queryable, kind: Db['kind'], args: { patientId: string; decisionId: string; ruleId: string; action: Action; now: Date }): Promise<void> {
  const { action, patientId } = args;
  switch (action.type) {
    case 'set_priority':
      await tx.query(`UPDATE patients SET priority = $2 WHERE id = $1`, [patientId, PRIORITY_VALUES[action.priority]]);
      return;
    case 'add_tags':
      await tx.query(
        `UPDATE patients SET tags = ARRAY(SELECT DISTINCT t FROM unnest(tags || $2::text[]) AS t ORDER BY t) WHERE id = $1`,
        [patientId, action.tags],
      );
      return;
    case 'auto_reply': {
      // Through the outbox like any reply, flagged automatic: the waiting clock keeps running.
      const sent = await createOutbound(joinTransaction(tx, kind), { patientId, authorId: null, body: action.text, automatic: true });
      if ('error' in sent) {
        await appendEvent(tx, { patientId, kind: 'alert', detail: { severity: 'warning', message: `automatic reply not sent: ${sent.reason}`, ruleId: args.ruleId, decisionId: args.decisionId } });
        return;
      }
      await tx.query(`UPDATE patients SET last_auto_reply_at = $2 WHERE id = $1`, [patientId, args.now]);
      return;
    }
    case 'raise_alert':
      // Alerting proper (paging, dashboards) is built elsewhere; the alert is a timeline item it can pick up.
      await appendEvent(tx, { patientId, kind: 'alert', detail: { severity: action.severity, message: action.message, ruleId: args.ruleId, decisionId: args.decisionId } });
      return;
  }
}

// ---- timers ------------------------------------------------------------------------------------------------

export async function startTimer(
  tx: Queryable,
  args: { patientId: string; kind: 'escalation' | 'handoff_accept'; decision: RoutingDecision; now: Date; coordinatorId: string | null; teamId: string | null; handoffId: string | null; afterMinutes?: number },
): Promise<void> {
  const minutes = args.afterMinutes ?? args.decision.fallbacks[0]?.afterMinutes;
  if (minutes === undefined) return;
  await tx.query(
    `INSERT INTO routing_timers (patient_id, kind, due_at, started_at, coordinator_id, team_id, handoff_id, decision)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
    [args.patientId, args.kind, new Date(args.now.getTime() + minutes * 60_000), args.now, args.coordinatorId, args.coordinatorId ? null : args.teamId, args.handoffId, JSON.stringify(args.decision)],
  );
}

export async function closeOpenTimer(tx: Queryable, patientId: string, now: Date, outcome: string): Promise<void> {
  await tx.query(`UPDATE routing_timers SET fired_at = $2, outcome = $3 WHERE patient_id = $1 AND fired_at IS NULL`, [patientId, now, outcome]);
}
