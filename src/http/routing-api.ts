/**
 * Routing over HTTP: rule sets (versions, import/export), dry runs, team queues and claims, handoff accept and
 * decline, coordinator status, bulk reassignment, and a patient's routing state. Handoff itself is
 * POST /api/patients/:id/handoff in api.ts.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { describeDecision } from '../core/routing/index.ts';
import { RoutingFactsSchema } from '../core/routing/facts.ts';
import { CHANNELS } from '../core/types.ts';
import { FallbackTargetSchema } from '../core/routing/rules.ts';
import { compileRuleSet } from '../core/routing/evaluate.ts';
import { appendAudit } from '../db/audit.ts';
import type { Coordinator } from '../db/coordinators.ts';
import {
  acceptHandoff,
  claimFromQueue,
  declineHandoff,
  findHandoff,
  HandoffRefused,
  listTeamQueue,
  reassignAll,
  setCoordinatorStatus,
} from '../db/handoffs.ts';
import { supervisesCoordinator, supervisesTeam } from '../db/visibility.ts';
import { previewDecision } from '../db/routing.ts';
import {
  BUILT_IN_RULE_SET,
  checkRuleSet,
  getRuleSetVersion,
  latestRuleSetVersion,
  listRuleSetVersions,
  loadActiveRules,
  saveRuleSet,
} from '../db/routing-rules.ts';
import { AppError, BadRequestError, ConflictError, ForbiddenError, NotFoundError } from '../errors.ts';
import { parseInput, type AppDeps } from './server.ts';
import { ADMIN, PATIENT, SUPERVISOR, callerOf, patientRoute, policy, requirePatientVisible } from './policy.ts';

/** The file format of an export; import also accepts a bare rule set. */
export const RULES_FILE_FORMAT = 'switchboard.routing-rules/v1';

const uuid = z.uuid();
const VersionParams = z.object({ version: z.coerce.number().int().min(1) });
const IdParams = z.object({ id: z.string().max(64) });
const SaveBody = z.object({ ruleSet: z.unknown(), comment: z.string().trim().max(500).optional() });
const ImportBody = z.union([
  z.object({ format: z.literal(RULES_FILE_FORMAT), ruleSet: z.unknown(), comment: z.string().max(500).optional() }),
  z.object({ rules: z.array(z.unknown()) }).passthrough(),
]);
const ExportQuery = z.object({ version: z.coerce.number().int().min(1).optional() });
const DryRunBody = z
  .object({
    /** An existing patient: their stored attributes, current coordinator and auto-reply history are used. */
    patientId: uuid.optional(),
    /** A hypothetical patient (ignored when patientId is given). */
    patient: RoutingFactsSchema.shape.patient.optional(),
    message: z.object({ text: z.string().max(10_000), channel: z.enum(CHANNELS), hasMedia: z.boolean().default(false) }),
    /** When to route it; default now. */
    at: z.iso.datetime({ offset: true }).optional(),
    /** Try a candidate rule set instead of the active one (validated, never stored). */
    ruleSet: z.unknown().optional(),
  })
  .strict();
const StatusBody = z.object({
  status: z.enum(['available', 'away', 'out_of_office']),
  fallbackTarget: FallbackTargetSchema.nullable().optional(),
  returnWhenBack: z.boolean().optional(),
});
const ReassignBody = z
  .object({ fromCoordinatorId: uuid, toCoordinatorId: uuid.optional(), toTeamId: uuid.optional(), note: z.string().trim().max(2000).optional() })
  .refine((b) => (b.toCoordinatorId === undefined) !== (b.toTeamId === undefined), { message: 'name exactly one of toCoordinatorId or toTeamId', path: ['toCoordinatorId'] });
const DeclineBody = z.object({ reason: z.string().trim().max(2000).optional() }).optional();

export async function registerRoutingRoutes(app: FastifyInstance, deps: AppDeps & { now?: () => Date }): Promise<void> {
  const { db } = deps;
  const now = deps.now ?? (() => new Date());

  const refused = (error: unknown): never => {
    if (!(error instanceof HandoffRefused)) throw error;
    if (error.code === 'not_found') throw new NotFoundError('handoff');
    if (error.code === 'not_pending' || error.code === 'not_queued' || error.code === 'already_assigned') throw new ConflictError(error.code, error.message);
    if (error.code === 'not_yours' || error.code === 'not_a_member') throw new ForbiddenError(error.code, error.message);
    throw new BadRequestError(error.code, error.message);
  };
  /** A supervisor moves patients only from and to their own teams' members and teams (404 otherwise, as for none); admins anywhere. */
  async function requireBulkScope(caller: Coordinator, ids: { fromCoordinatorId?: string; toCoordinatorId?: string; toTeamId?: string }): Promise<void> {
    for (const coordinatorId of [ids.fromCoordinatorId, ids.toCoordinatorId]) {
      if (coordinatorId && !(await supervisesCoordinator(db, caller, coordinatorId))) throw new NotFoundError('coordinator');
    }
    if (ids.toTeamId && !(await supervisesTeam(db, caller, ids.toTeamId))) throw new NotFoundError('team');
  }
  const invalidRuleSet = (errors: unknown) =>
    new AppError(422, 'invalid_rule_set', 'the rule set was rejected; the active version is unchanged', { details: errors });

  // ---- rule sets -------------------------------------------------------------------------------------------

  app.get('/api/admin/routing/rules', policy(SUPERVISOR), async (request) => {
    const latest = await latestRuleSetVersion(db);
    if (!latest) return { version: null, builtIn: true, ruleSet: BUILT_IN_RULE_SET, authorId: null, createdAt: null, comment: null };
    return { ...latest, builtIn: false };
  });

  const save = async (request: FastifyRequest, input: unknown, comment: string | undefined, action: string) => {
    const caller = callerOf(request);
    const result = await saveRuleSet(db, { input, authorId: caller.id, comment });
    if (!result.ok) {
      await appendAudit(db, { actorId: caller.id, action: `${action}_rejected`, detail: { errors: result.errors.length }, ip: request.ip });
      throw invalidRuleSet(result.errors);
    }
    await appendAudit(db, { actorId: caller.id, action, detail: { version: result.version.version, comment: comment ?? null }, ip: request.ip });
    return result.version;
  };

  app.put('/api/admin/routing/rules', policy(ADMIN), async (request, reply) => {
    const body = parseInput(SaveBody, request.body);
    const version = await save(request, body.ruleSet, body.comment, 'routing.rules.save');
    return reply.status(201).send(version);
  });

  app.post('/api/admin/routing/rules/validate', policy(SUPERVISOR), async (request) => {
    const body = parseInput(SaveBody, request.body);
    const checked = await checkRuleSet(db, body.ruleSet);
    return checked.ok ? { ok: true, errors: [] } : { ok: false, errors: checked.errors };
  });

  app.get('/api/admin/routing/rules/versions', policy(SUPERVISOR), async (request) => {
    return { versions: await listRuleSetVersions(db) };
  });

  app.get('/api/admin/routing/rules/versions/:version', policy(SUPERVISOR), async (request) => {
    const { version } = parseInput(VersionParams, request.params);
    const found = await getRuleSetVersion(db, version);
    if (!found) throw new NotFoundError('rule set version');
    return found;
  });

  // Re-activating an old version is a change like any other: it is stored again as the newest version.
  app.post('/api/admin/routing/rules/versions/:version/activate', policy(ADMIN), async (request, reply) => {
    const { version } = parseInput(VersionParams, request.params);
    const found = await getRuleSetVersion(db, version);
    if (!found) throw new NotFoundError('rule set version');
    const saved = await save(request, found.ruleSet, `activated version ${version}`, 'routing.rules.activate');
    return reply.status(201).send(saved);
  });

  app.get('/api/admin/routing/rules/export', policy(SUPERVISOR), async (request, reply) => {
    const caller = callerOf(request);
    const { version } = parseInput(ExportQuery, request.query);
    const found = version ? await getRuleSetVersion(db, version) : await latestRuleSetVersion(db);
    if (version && !found) throw new NotFoundError('rule set version');
    await appendAudit(db, { actorId: caller.id, action: 'routing.rules.export', detail: { version: found?.version ?? null }, ip: request.ip });
    const file = { format: RULES_FILE_FORMAT, version: found?.version ?? null, exportedAt: new Date().toISOString(), ruleSet: found?.ruleSet ?? BUILT_IN_RULE_SET };
    return reply
      .header('content-disposition', `attachment; filename="routing-rules-v${found?.version ?? 0}.json"`)
      .type('application/json')
      .send(JSON.stringify(file, null, 2));
  });

  app.post('/api/admin/routing/rules/import', policy(ADMIN), async (request, reply) => {
    const body = parseInput(ImportBody, request.body);
    const file = 'format' in body ? body : null;
    const version = await save(request, file ? file.ruleSet : body, typeof file?.comment === 'string' ? file.comment : 'imported', 'routing.rules.import');
    return reply.status(201).send(version);
  });

  // ---- dry run ---------------------------------------------------------------------------------------------

  app.post('/api/routing/dry-run', policy({ ...SUPERVISOR, scope: { handler: 'the patientId in the body' } }), async (request) => {
    const caller = callerOf(request);
    const body = parseInput(DryRunBody, request.body);
    let compiled;
    if (body.ruleSet !== undefined) {
      const checked = await checkRuleSet(db, body.ruleSet);
      if (!checked.ok) throw invalidRuleSet(checked.errors);
      compiled = compileRuleSet(checked.ruleSet);
    }
    if (body.patientId) await requirePatientVisible(db, caller, body.patientId);
    const at = body.at ? new Date(body.at) : now();
    const { decision, facts } = await previewDecision(db, { compiled, patientId: body.patientId, patient: body.patient, message: body.message, now: at });
    if (body.patientId) await appendAudit(db, { actorId: caller.id, action: 'routing.dry_run', patientId: body.patientId, ip: request.ip });
    const active = compiled ? null : await loadActiveRules(db);
    return {
      at: at.toISOString(),
      ruleSetVersion: compiled ? null : active!.version,
      candidate: compiled !== undefined,
      decision,
      explanation: describeDecision(decision),
      facts: { patient: facts.patient, message: facts.message, conversation: facts.conversation, coordinators: facts.coordinators.length },
    };
  });

  // ---- a patient's routing ---------------------------------------------------------------------------------

  app.get('/api/patients/:id/routing', policy(PATIENT), async (request) => {
    const { caller, patientId } = patientRoute(request);
    const [assignment, handoff, timer, decisions] = await Promise.all([
      db.query(`SELECT coordinator_id AS "coordinatorId", team_id AS "teamId", assigned_at AS "assignedAt", return_to_coordinator_id AS "returnToCoordinatorId" FROM assignments WHERE patient_id = $1`, [patientId]),
      db.query(
        `SELECT id, actor_id AS "actorId", from_coordinator_id AS "fromCoordinatorId", to_coordinator_id AS "toCoordinatorId", to_team_id AS "toTeamId",
                note, state, requires_accept AS "requiresAccept", created_at AS "createdAt"
         FROM handoffs WHERE patient_id = $1 ORDER BY created_at DESC LIMIT 1`,
        [patientId],
      ),
      db.query(`SELECT kind, due_at AS "dueAt", coordinator_id AS "coordinatorId", team_id AS "teamId" FROM routing_timers WHERE patient_id = $1 AND fired_at IS NULL`, [patientId]),
      db.query(
        `SELECT id, kind, message_id AS "messageId", rule_set_version AS "ruleSetVersion", rule_id AS "ruleId", assignment, decided_at AS "decidedAt"
         FROM routing_decisions WHERE patient_id = $1 ORDER BY decided_at DESC, id LIMIT 50`,
        [patientId],
      ),
    ]);
    await appendAudit(db, { actorId: caller.id, action: 'routing.read', patientId, ip: request.ip });
    return {
      patientId,
      assignment: assignment.rows[0] ?? null,
      // The latest handoff's note stays pinned for the receiver.
      pinnedHandoff: handoff.rows[0] ?? null,
      openTimer: timer.rows[0] ?? null,
      decisions: decisions.rows,
    };
  });

  app.post('/api/patients/:id/claim', policy(PATIENT), async (request) => {
    const { caller, patientId } = patientRoute(request);
    const result = await claimFromQueue(db, { patientId, coordinatorId: caller.id, anyTeam: caller.role !== 'coordinator', now: now() }).catch(refused);
    await appendAudit(db, { actorId: caller.id, action: 'patient.claim', patientId, detail: { teamId: result.teamId }, ip: request.ip });
    return { patientId, coordinatorId: caller.id, teamId: result.teamId };
  });

  app.get('/api/teams/:id/queue', policy({ auth: 'caller', scope: { team: 'id' } }), async (request) => {
    // The policy's team scope: members see their team's queue (a supervisor supervises only teams they belong to); admins every team's.
    const caller = callerOf(request);
    const { id } = parseInput(z.object({ id: uuid }), request.params);
    const patients = await listTeamQueue(db, id);
    await appendAudit(db, { actorId: caller.id, action: 'queue.read', detail: { teamId: id, patients: patients.length }, ip: request.ip });
    return { teamId: id, patients };
  });

  // ---- handoff accept / decline ----------------------------------------------------------------------------

  app.post('/api/handoffs/:id/accept', policy({ auth: 'caller', scope: { handler: 'only the handoff\'s receiving coordinator' } }), async (request) => {
    const caller = callerOf(request);
    const { id } = parseInput(IdParams, request.params);
    if (!(await findHandoff(db, id))) throw new NotFoundError('handoff');
    const result = await acceptHandoff(db, { handoffId: id, coordinatorId: caller.id, now: now() }).catch(refused);
    await appendAudit(db, { actorId: caller.id, action: 'handoff.accept', patientId: result.patientId, detail: { handoffId: id }, ip: request.ip });
    return { handoffId: id, state: 'accepted', patientId: result.patientId };
  });

  app.post('/api/handoffs/:id/decline', policy({ auth: 'caller', scope: { handler: 'only the handoff\'s receiving coordinator' } }), async (request) => {
    const caller = callerOf(request);
    const { id } = parseInput(IdParams, request.params);
    const body = parseInput(DeclineBody, request.body ?? undefined);
    if (!(await findHandoff(db, id))) throw new NotFoundError('handoff');
    const result = await declineHandoff(db, { handoffId: id, coordinatorId: caller.id, reason: body?.reason, now: now() }).catch(refused);
    await appendAudit(db, { actorId: caller.id, action: 'handoff.decline', patientId: result.patientId, detail: { handoffId: id, nowCoordinatorId: result.coordinatorId, nowTeamId: result.teamId }, ip: request.ip });
    return { handoffId: id, state: 'declined', ...result };
  });

  // ---- coordinators ----------------------------------------------------------------------------------------

  app.put('/api/coordinators/:id/status', policy({ auth: 'caller', scope: { coordinator: 'id' } }), async (request) => {
    const caller = callerOf(request);
    // The policy's coordinator scope: one's own status, or (supervisors) their teams' members'; admins anyone's.
    const { id } = parseInput(z.object({ id: uuid }), request.params);
    const body = parseInput(StatusBody, request.body);
    const result = await setCoordinatorStatus(db, { coordinatorId: id, ...body, actorId: caller.id, now: now() }).catch(refused);
    await appendAudit(db, { actorId: caller.id, action: 'coordinator.status', detail: { coordinatorId: id, from: result.previous, to: body.status, returned: result.returned.length }, ip: request.ip });
    return { coordinatorId: id, status: body.status, returnedPatients: result.returned };
  });

  app.post('/api/routing/reassign', policy({ ...SUPERVISOR, scope: { handler: 'the from and to coordinators or team in the body' } }), async (request) => {
    const caller = callerOf(request);
    const body = parseInput(ReassignBody, request.body);
    await requireBulkScope(caller, { fromCoordinatorId: body.fromCoordinatorId, toCoordinatorId: body.toCoordinatorId, toTeamId: body.toTeamId });
    const moved = await reassignAll(db, { ...body, note: body.note ?? null, actorId: caller.id, now: now() }).catch(refused);
    for (const patientId of moved) {
      await appendAudit(db, { actorId: caller.id, action: 'patient.reassign', patientId, detail: { from: body.fromCoordinatorId, to: body.toCoordinatorId ?? null, toTeam: body.toTeamId ?? null, bulk: true }, ip: request.ip });
    }
    return { moved: moved.length, patientIds: moved };
  });
}
