import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { chooseReplyIdentity } from '../core/reply-channel.ts';
import { appendAudit } from '../db/audit.ts';
import {
  addNote,
  createTeam,
  removeTeamMember,
  setTeamMember,
  deleteCannedResponse,
  listCannedResponses,
  listConversations,
  listTeams,
  markRead,
  readPatientPanel,
  supervisorOverview,
  upsertCannedResponse,
} from '../db/inbox.ts';
import { handOffPatient, HandoffRefused } from '../db/handoffs.ts';
import { listReplyCandidates } from '../db/fallback.ts';
import { canSeePatient, supervisesCoordinator, supervisesTeam } from '../db/visibility.ts';
import { ConflictError, NotFoundError } from '../errors.ts';
import { registerLiveRoutes } from './live.ts';
import { parseInput, type AppDeps } from './server.ts';
import { ADMIN, CALLER, PATIENT, SUPERVISOR, callerOf, patientRoute, policy } from './policy.ts';
import { registerSessionRoutes } from './session-api.ts';
import { registerWebApp } from './web-app.ts';

const ConversationsQuery = z.object({
  filter: z.enum(['all', 'mine', 'unread', 'waiting', 'team']).default('all'),
  q: z.string().trim().max(200).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(200),
});
const ReadBody = z.object({ seq: z.number().int().min(0) });
const NoteBody = z.object({ note: z.string().trim().min(1, 'a note must not be empty').max(4000) });
const CannedBody = z.object({
  shortcut: z.string().trim().toLowerCase().regex(/^[a-z0-9][a-z0-9_-]{0,39}$/, 'letters, digits, - and _ (up to 40)'),
  title: z.string().trim().min(1).max(200),
  body: z.string().trim().min(1).max(1600),
});
const IdParams = z.object({ id: z.uuid() });
const TeamBody = z.object({ name: z.string().trim().min(1).max(200), timezone: z.string().trim().min(1).max(64).default('UTC') });
const MemberBody = z.object({ coordinatorId: z.uuid(), role: z.enum(['member', 'supervisor']).default('member') });
const MemberParams = z.object({ id: z.uuid(), coordinatorId: z.uuid() });
const ReassignBody = z
  .object({
    patientIds: z.array(z.uuid()).min(1).max(500),
    toCoordinatorId: z.uuid().optional(),
    toTeamId: z.uuid().optional(),
    note: z.string().trim().min(1, 'a reassignment needs a note').max(2000),
  })
  .refine((body) => Boolean(body.toCoordinatorId) !== Boolean(body.toTeamId), { message: 'give exactly one of toCoordinatorId or toTeamId' });

/**
 * The coordinator web app's API (issue 5) and, through it, sessions, live updates and the app itself.
 * Every patient route answers 404 for a patient the caller may not see, exactly as for one that does not exist.
 */
export async function registerInboxRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const { db } = deps;
  await registerSessionRoutes(app, deps);
  await registerLiveRoutes(app, deps);
  await registerWebApp(app);

  app.get('/api/conversations', policy(CALLER), async (request) => {
    const caller = callerOf(request);
    const query = parseInput(ConversationsQuery, request.query);
    const rows = await listConversations(db, caller, query);
    // The search text itself may be PHI (a name, a phone number): the audit records that there was one.
    await appendAudit(db, { actorId: caller.id, action: 'inbox.read', detail: { filter: query.filter, search: Boolean(query.q), patients: rows.length }, ip: request.ip });
    return { conversations: rows };
  });

  app.post('/api/patients/:id/read', policy(PATIENT), async (request) => {
    const { caller, patientId } = patientRoute(request);
    const { seq } = parseInput(ReadBody, request.body);
    return { patientId, readSeq: await markRead(db, caller.id, patientId, seq) };
  });

  app.get('/api/patients/:id', policy(PATIENT), async (request) => {
    const { caller, patientId } = patientRoute(request);
    const panel = await readPatientPanel(db, patientId);
    if (!panel) throw new NotFoundError('patient');
    await appendAudit(db, { actorId: caller.id, action: 'patient.read', patientId, ip: request.ip });
    return panel;
  });

  /** What a reply would use right now, and why: the composer shows it, the coordinator never picks it. */
  app.get('/api/patients/:id/reply-channel', policy(PATIENT), async (request) => {
    const { caller, patientId } = patientRoute(request);
    // The same candidates and rules (opt-outs, messaging windows, templates) as the send itself (messages.ts).
    const choice = chooseReplyIdentity(await listReplyCandidates(db, patientId), deps.replyRules);
    await appendAudit(db, { actorId: caller.id, action: 'reply_channel.read', patientId, ip: request.ip });
    if (!choice.ok) return { ...choice, channel: null };
    const { identity, ...rest } = choice;
    return { ...rest, channel: identity.channel, address: identity.address, identityId: identity.id, lastInboundAt: identity.lastInboundAt };
  });

  app.post('/api/patients/:id/notes', policy(PATIENT), async (request, reply) => {
    const { caller, patientId } = patientRoute(request);
    const { note } = parseInput(NoteBody, request.body);
    const created = await addNote(db, { patientId, actorId: caller.id, note });
    await appendAudit(db, { actorId: caller.id, action: 'note.create', patientId, detail: { seq: created.seq }, ip: request.ip });
    return reply.status(201).send({ patientId, ...created });
  });

  app.get('/api/teams', policy(CALLER), async () => ({ teams: await listTeams(db) }));

  app.post('/api/admin/teams', policy(ADMIN), async (request, reply) => {
    const caller = callerOf(request);
    const input = parseInput(TeamBody, request.body);
    const team = await createTeam(db, input);
    if (!team) throw new ConflictError('team_exists', 'a team with that name exists');
    await appendAudit(db, { actorId: caller.id, action: 'team.create', detail: { teamId: team.id }, ip: request.ip });
    return reply.status(201).send(team);
  });

  app.put('/api/admin/teams/:id/members', policy(ADMIN), async (request, reply) => {
    const caller = callerOf(request);
    const { id } = parseInput(IdParams, request.params);
    const input = parseInput(MemberBody, request.body);
    if (!(await setTeamMember(db, { teamId: id, ...input }))) throw new NotFoundError('team or coordinator');
    await appendAudit(db, { actorId: caller.id, action: 'team.member_set', detail: { teamId: id, ...input }, ip: request.ip });
    return reply.status(204).send();
  });

  app.delete('/api/admin/teams/:id/members/:coordinatorId', policy(ADMIN), async (request, reply) => {
    const caller = callerOf(request);
    const { id, coordinatorId } = parseInput(MemberParams, request.params);
    if (!(await removeTeamMember(db, id, coordinatorId))) throw new NotFoundError('team member');
    await appendAudit(db, { actorId: caller.id, action: 'team.member_remove', detail: { teamId: id, coordinatorId }, ip: request.ip });
    return reply.status(204).send();
  });

  app.get('/api/canned-responses', policy(CALLER), async () => ({ cannedResponses: await listCannedResponses(db) }));

  app.post('/api/canned-responses', policy(ADMIN), async (request, reply) => {
    const caller = callerOf(request);
    const input = parseInput(CannedBody, request.body);
    const created = await upsertCannedResponse(db, { ...input, actorId: caller.id });
    if (!created) throw new ConflictError('shortcut_taken', 'a canned response with that shortcut exists');
    await appendAudit(db, { actorId: caller.id, action: 'canned_response.create', detail: { id: created.id }, ip: request.ip });
    return reply.status(201).send(created);
  });

  app.put('/api/canned-responses/:id', policy(ADMIN), async (request) => {
    const caller = callerOf(request);
    const { id } = parseInput(IdParams, request.params);
    const input = parseInput(CannedBody, request.body);
    const updated = await upsertCannedResponse(db, { ...input, id, actorId: caller.id }).catch((error: unknown) => {
      if ((error as { code?: string }).code === '23505') throw new ConflictError('shortcut_taken', 'a canned response with that shortcut exists');
      throw error;
    });
    if (!updated) throw new NotFoundError('canned response');
    await appendAudit(db, { actorId: caller.id, action: 'canned_response.update', detail: { id }, ip: request.ip });
    return updated;
  });

  app.delete('/api/canned-responses/:id', policy(ADMIN), async (request, reply) => {
    const caller = callerOf(request);
    const { id } = parseInput(IdParams, request.params);
    if (!(await deleteCannedResponse(db, id))) throw new NotFoundError('canned response');
    await appendAudit(db, { actorId: caller.id, action: 'canned_response.delete', detail: { id }, ip: request.ip });
    return reply.status(204).send();
  });

  app.get('/api/supervisor/overview', policy(SUPERVISOR), async (request) => {
    const caller = callerOf(request);
    const overview = await supervisorOverview(db, caller);
    await appendAudit(db, { actorId: caller.id, action: 'supervisor.overview', ip: request.ip });
    return overview;
  });

  /** Bulk reassignment: each patient is handed off in its own transaction and recorded as a handoff. */
  app.post('/api/supervisor/reassign', policy({ ...SUPERVISOR, scope: { handler: 'each patient in the body, and the target coordinator or team' } }), async (request) => {
    const caller = callerOf(request);
    const input = parseInput(ReassignBody, request.body);
    // Targets outside the supervisor's teams are "no such coordinator/team", as in POST /api/routing/reassign.
    if (input.toCoordinatorId && !(await supervisesCoordinator(db, caller, input.toCoordinatorId))) throw new NotFoundError('coordinator');
    if (input.toTeamId && !(await supervisesTeam(db, caller, input.toTeamId))) throw new NotFoundError('team');
    const results: Array<{ patientId: string; ok: boolean; error?: string }> = [];
    for (const patientId of input.patientIds) {
      if (!(await canSeePatient(db, caller, patientId))) {
        results.push({ patientId, ok: false, error: 'not_found' });
        continue;
      }
      let result;
      try {
        // The routing branch's handoff (src/db/handoffs.ts): same rules, timeline item and live notice as one by one.
        result = await handOffPatient(db, { patientId, actorId: caller.id, toCoordinatorId: input.toCoordinatorId, toTeamId: input.toTeamId, note: input.note, requireAccept: false, now: new Date() });
      } catch (error) {
        if (!(error instanceof HandoffRefused)) throw error;
        results.push({ patientId, ok: false, error: error.code });
        continue;
      }
      await appendAudit(db, {
        actorId: caller.id,
        action: 'patient.handoff',
        patientId,
        detail: { from: result.fromCoordinatorId, to: input.toCoordinatorId ?? null, toTeam: input.toTeamId ?? null, bulk: true },
        ip: request.ip,
      });
      results.push({ patientId, ok: true });
    }
    return { results, moved: results.filter((r) => r.ok).length };
  });
}
