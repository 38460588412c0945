import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { appendAudit, listAudit } from '../db/audit.ts';
import { insertCoordinator, issueToken, listCoordinators, revokeToken } from '../db/coordinators.ts';
import { createOutbound } from '../db/messages.ts';
import { resolveUncertainDelivery } from '../db/delivery-resolution.ts';
import { listInbox, readTimeline } from '../db/patients.ts';
import { handOffPatient, HandoffRefused } from '../db/handoffs.ts';
import { FallbackTargetSchema } from '../core/routing/rules.ts';
import { BadRequestError, ConflictError, NotFoundError } from '../errors.ts';
import { hashPassword } from '../security/passwords.ts';
import { parseInput, type AppDeps } from './server.ts';
import { authenticate } from './session-api.ts';
import { ADMIN, CALLER, PATIENT, PUBLIC, callerOf, patientRoute, policy } from './policy.ts';


const LoginBody = z.object({ email: z.email().max(320), password: z.string().min(1).max(1024) });
const SendBody = z.object({ body: z.string().trim().min(1, 'body must not be empty').max(1600), idempotencyKey: z.string().min(1).max(200).optional() });
const MessageParams = z.object({ id: z.string().max(64), messageId: z.uuid() });
const DeliveryBody = z.object({ resolution: z.enum(['resend', 'delivered', 'cancel']) });
const HandoffBody = z
  .object({
    toCoordinatorId: z.uuid().optional(),
    toTeamId: z.uuid().optional(),
    note: z.string().trim().min(1, 'a handoff needs a note').max(2000),
    requireAccept: z.boolean().default(false),
    acceptWithinMinutes: z.number().int().min(1).max(7 * 24 * 60).optional(),
    fallback: FallbackTargetSchema.optional(),
  })
  .refine((b) => (b.toCoordinatorId === undefined) !== (b.toTeamId === undefined), { message: 'name exactly one of toCoordinatorId or toTeamId', path: ['toCoordinatorId'] });
const TimelineQuery = z.object({ before: z.coerce.number().int().positive().optional(), limit: z.coerce.number().int().min(1).max(500).default(100) });
const InboxQuery = z.object({ scope: z.enum(['mine', 'all']).default('mine'), limit: z.coerce.number().int().min(1).max(500).default(200) });
const CreateCoordinatorBody = z.object({
  email: z.email().max(320),
  name: z.string().trim().min(1).max(200),
  password: z.string().min(12, 'passwords need at least 12 characters').max(1024),
  role: z.enum(['coordinator', 'supervisor', 'admin']).default('coordinator'),
});
const AuditQuery = z.object({ patientId: z.uuid().optional(), actorId: z.uuid().optional(), limit: z.coerce.number().int().min(1).max(1000).default(100) });

export async function registerApiRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const { db } = deps;
  app.get('/api/health', policy(PUBLIC), async (_request, reply) => {
    await db.query('SELECT 1');
    return reply.send({ status: 'ok', storage: db.kind });
  });

  app.post('/api/auth/login', policy(PUBLIC), async (request, reply) => {
    const { email, password } = parseInput(LoginBody, request.body);
    const coordinator = await authenticate(db, { email, password, ip: request.ip, via: 'token' });
    const { token, expiresAt } = await issueToken(db, coordinator.id, deps.tokenTtlMs);
    await appendAudit(db, { actorId: coordinator.id, action: 'auth.login', ip: request.ip });
    return reply.send({ token, expiresAt, coordinator: { id: coordinator.id, name: coordinator.name, email: coordinator.email, role: coordinator.role } });
  });

  app.post('/api/auth/logout', policy(CALLER), async (request, reply) => {
    const caller = callerOf(request);
    // A caller signed in by the browser session has no token to revoke here: that is POST /api/session/logout.
    const header = request.headers.authorization;
    if (!header?.startsWith('Bearer ')) throw new BadRequestError('no_bearer_token', 'this signs out a bearer token; a browser session signs out with POST /api/session/logout');
    await revokeToken(db, header.slice(7).trim());
    await appendAudit(db, { actorId: caller.id, action: 'auth.logout', ip: request.ip });
    return reply.status(204).send();
  });

  app.get('/api/me', policy(CALLER), async (request) => callerOf(request));

  app.get('/api/coordinators', policy(CALLER), async () => ({ coordinators: await listCoordinators(db) }));

  app.get('/api/inbox', policy(CALLER), async (request) => {
    const caller = callerOf(request);
    const { scope, limit } = parseInput(InboxQuery, request.query);
    // Only admins see every patient; supervisors see their teams (GET /api/conversations, visibility.ts).
    const everyone = scope === 'all' && caller.role === 'admin';
    const rows = await listInbox(db, { coordinatorId: everyone ? null : caller.id, limit });
    await appendAudit(db, { actorId: caller.id, action: 'inbox.read', detail: { scope: everyone ? 'all' : 'mine', patients: rows.length }, ip: request.ip });
    return { patients: rows };
  });

  app.get('/api/patients/:id/timeline', policy(PATIENT), async (request) => {
    const { caller, patientId } = patientRoute(request);
    const { before, limit } = parseInput(TimelineQuery, request.query);
    const items = await readTimeline(db, { patientId, beforeSeq: before, limit });
    await appendAudit(db, { actorId: caller.id, action: 'timeline.read', patientId, ip: request.ip });
    const oldest = items[0];
    return { patientId, items, nextBefore: items.length === limit && oldest ? oldest.seq : null };
  });

  app.post('/api/patients/:id/messages', policy(PATIENT), async (request, reply) => {
    const { caller, patientId } = patientRoute(request);
    const input = parseInput(SendBody, request.body);
    const result = await createOutbound(db, { patientId, authorId: caller.id, body: input.body, idempotencyKey: input.idempotencyKey, rules: deps.replyRules }, deps.metrics);
    if ('error' in result) throw new ConflictError(result.error, result.reason);
    if (!result.replayed) await appendAudit(db, { actorId: caller.id, action: 'message.send', patientId, detail: { messageId: result.messageId, channel: result.channel }, ip: request.ip });
    return reply.status(result.replayed ? 200 : 201).send(result);
  });

  /** A coordinator settles a reply whose delivery is uncertain (the provider could not be asked): resend, it arrived, or cancel. */
  app.post('/api/patients/:id/messages/:messageId/delivery', policy(PATIENT), async (request) => {
    const { caller, patientId } = patientRoute(request);
    const { messageId } = parseInput(MessageParams, request.params);
    const { resolution } = parseInput(DeliveryBody, request.body);
    const result = await resolveUncertainDelivery(db, { patientId, messageId, resolution });
    if (!result.ok && result.reason === 'not_found') throw new NotFoundError('message');
    if (!result.ok) throw new ConflictError('not_uncertain', 'this message is not waiting for a delivery decision');
    await appendAudit(db, { actorId: caller.id, action: 'message.delivery_resolve', patientId, detail: { messageId, resolution }, ip: request.ip });
    return { patientId, messageId, resolution, status: result.status };
  });

  app.post('/api/patients/:id/handoff', policy(PATIENT), async (request, reply) => {
    const { caller, patientId } = patientRoute(request);
    const input = parseInput(HandoffBody, request.body);
    const result = await handOffPatient(db, { patientId, actorId: caller.id, ...input, now: new Date() }).catch((error: unknown) => {
      if (!(error instanceof HandoffRefused)) throw error;
      if (error.code === 'already_assigned') throw new ConflictError(error.code, error.message);
      throw new BadRequestError(error.code, error.message);
    });
    await appendAudit(db, { actorId: caller.id, action: 'patient.handoff', patientId, detail: { handoffId: result.handoffId, from: result.fromCoordinatorId, to: result.toCoordinatorId, toTeam: result.toTeamId, state: result.state }, ip: request.ip });
    return reply.status(201).send({ patientId, ...result });
  });

  app.post('/api/admin/coordinators', policy(ADMIN), async (request, reply) => {
    const caller = callerOf(request);
    const input = parseInput(CreateCoordinatorBody, request.body);
    const created = await insertCoordinator(db, { email: input.email, name: input.name, role: input.role, passwordHash: await hashPassword(input.password) });
    if (!created) throw new ConflictError('email_taken', 'a coordinator with that email exists');
    await appendAudit(db, { actorId: caller.id, action: 'coordinator.create', detail: { coordinatorId: created.id, role: created.role }, ip: request.ip });
    return reply.status(201).send(created);
  });

  app.get('/api/admin/audit', policy(ADMIN), async (request) => {
    const caller = callerOf(request);
    const query = parseInput(AuditQuery, request.query);
    await appendAudit(db, { actorId: caller.id, action: 'audit.read', patientId: query.patientId ?? null, ip: request.ip });
    return { entries: await listAudit(db, query) };
  });
}
