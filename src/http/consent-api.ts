import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { appendAudit } from '../db/audit.ts';
import { listIdentityConsent } from '../db/consent.ts';
import { canAccessPatient } from '../db/patients.ts';
import { NotFoundError, UnauthorizedError } from '../errors.ts';
import { parseInput, type AppDeps } from './server.ts';

const PatientParams = z.object({ id: z.string().max(64) });

/** GET /api/patients/:id/identities: each identity with its consent state and ledger, so a coordinator sees why a channel is skipped. */
export async function registerConsentRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  app.get('/api/patients/:id/identities', async (request) => {
    const caller = request.caller;
    if (!caller) throw new UnauthorizedError();
    const { id } = parseInput(PatientParams, request.params);
    if (!(await canAccessPatient(deps.db, caller, id))) throw new NotFoundError('patient');
    const identities = await listIdentityConsent(deps.db, id);
    await appendAudit(deps.db, { actorId: caller.id, action: 'identities.read', patientId: id, ip: request.ip });
    return { patientId: id, identities };
  });
}
