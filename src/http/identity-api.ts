import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { normaliseAddress } from '../core/address.ts';
import { CHANNELS } from '../core/types.ts';
import { appendAudit } from '../db/audit.ts';
import { findMerge, linkIdentity, listMerges, mergePatients, undoMerge } from '../db/identities.ts';
import { canAccessPatient } from '../db/patients.ts';
import { BadRequestError, ConflictError, NotFoundError } from '../errors.ts';
import { parseInput, type AppDeps } from './server.ts';
import { PATIENT, callerOf, patientRoute, policy, requirePatientVisible } from './policy.ts';

const MergeParams = z.object({ mergeId: z.string().max(64) });
const LinkBody = z.object({ channel: z.enum(CHANNELS), address: z.string().min(1).max(320) });
const MergeBody = z.object({ patientId: z.uuid() });

/**
 * Identity linking and patient merges (docs/ARCHITECTURE.md §3). Admins and supervisors may act on any patient;
 * a coordinator only on patients assigned to them (for a merge: both). A patient the caller may not see is a 404.
 */
export async function registerIdentityRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const { db } = deps;

  // GET /api/patients/:id/identities (with each identity's consent state) lives in consent-api.ts.

  app.post('/api/patients/:id/identities', policy(PATIENT), async (request, reply) => {
    const { caller, patientId: id } = patientRoute(request);
    const input = parseInput(LinkBody, request.body);
    // Web chat identities (`patient:<id>`) are made by the system for the patient a chat link names; linking one by
    // hand would route that patient's chat into this thread.
    if (input.channel === 'webchat' || input.address.trim().toLowerCase().startsWith('patient:')) {
      throw new BadRequestError('system_identity', 'web chat identities are created by chat links, not linked by hand');
    }
    const normalised = normaliseAddress(input.channel, input.address, deps.defaultPhoneCountry);
    if (!normalised.ok) throw new BadRequestError('invalid_address', normalised.reason);
    const result = await linkIdentity(db, { patientId: id, channel: input.channel, address: normalised.address, actorId: caller.id });
    if ('error' in result) {
      // Name the other patient only to someone allowed to see them.
      const visible = await canAccessPatient(db, caller, result.otherPatientId);
      throw new ConflictError(
        'identity_taken',
        `${input.channel} ${normalised.address} already belongs to another patient${visible ? ` (${result.otherPatientId})` : ''}; merge the two patients instead: POST /api/patients/${id}/merge {"patientId": …}`,
      );
    }
    if (!result.linked) return reply.status(200).send({ patientId: id, identity: result.identity, alreadyLinked: true });
    await appendAudit(db, {
      actorId: caller.id,
      action: 'identity.link',
      patientId: id,
      detail: { identityId: result.identity.id, channel: input.channel, address: normalised.address },
      ip: request.ip,
    });
    return reply.status(201).send({ patientId: id, identity: result.identity, seq: result.seq });
  });

  app.get('/api/patients/:id/merges', policy(PATIENT), async (request) => {
    const { patientId: id } = patientRoute(request);
    return { patientId: id, merges: await listMerges(db, id) };
  });

  /** Merges the patient in the body into the one in the path (the survivor, whose id stays). */
  app.post('/api/patients/:id/merge', policy(PATIENT), async (request, reply) => {
    const { caller, patientId: survivorId } = patientRoute(request);
    const { patientId: absorbedId } = parseInput(MergeBody, request.body);
    await requirePatientVisible(db, caller, absorbedId);
    if (survivorId === absorbedId) throw new BadRequestError('same_patient', 'a patient cannot be merged with itself');
    const result = await mergePatients(db, { survivorId, absorbedId, actorId: caller.id });
    if ('error' in result) {
      if (result.error === 'not_found') throw new NotFoundError('patient');
      if (result.error === 'already_merged') throw new ConflictError('already_merged', 'one of the patients has been merged into another');
      throw new ConflictError('idempotency_conflict', 'both patients have a message with the same idempotency key; they cannot share one log');
    }
    const detail = { mergeId: result.mergeId, survivorId, absorbedId, messagesMoved: result.messagesMoved, eventsMoved: result.eventsMoved, identitiesMoved: result.identitiesMoved };
    await appendAudit(db, { actorId: caller.id, action: 'patient.merge', patientId: survivorId, detail, ip: request.ip });
    await appendAudit(db, { actorId: caller.id, action: 'patient.merge', patientId: absorbedId, detail, ip: request.ip });
    return reply.status(201).send(result);
  });

  app.post('/api/merges/:mergeId/undo', policy({ auth: 'caller', scope: { handler: 'the merge\'s surviving patient' } }), async (request, reply) => {
    const caller = callerOf(request);
    const { mergeId } = parseInput(MergeParams, request.params);
    const merge = await findMerge(db, mergeId);
    if (!merge) throw new NotFoundError('merge');
    // While merged, the survivor holds both patients: access to it is access to the merge.
    await requirePatientVisible(db, caller, merge.survivorId, 'merge');
    const result = await undoMerge(db, { mergeId, actorId: caller.id });
    if ('error' in result) {
      if (result.error === 'not_found') throw new NotFoundError('merge');
      if (result.error === 'already_undone') throw new ConflictError('already_undone', 'this merge has already been undone');
      throw new ConflictError('merge_not_latest', 'a later merge involves these patients; undo that one first');
    }
    const detail = { mergeId, survivorId: result.survivorId, absorbedId: result.absorbedId, movedToAbsorbed: result.movedToAbsorbed };
    await appendAudit(db, { actorId: caller.id, action: 'patient.merge_undo', patientId: result.survivorId, detail, ip: request.ip });
    await appendAudit(db, { actorId: caller.id, action: 'patient.merge_undo', patientId: result.absorbedId, detail, ip: request.ip });
    return reply.status(200).send(result);
  });
}
