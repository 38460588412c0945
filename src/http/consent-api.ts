import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { appendAudit } from '../db/audit.ts';
import { listIdentityConsent } from '../db/consent.ts';
import { canAccessPatient } from '../db/patients.ts';
import { NotFoundError, UnauthorizedError } from '../errors.ts';
import { parseInput, type AppDeps } from './server.ts';

const PatientParams = z.object({ id: z.string().max(64) });

/**
 * GET /api/patients/:id/identities (and its alias /consent): each identity with its consent state and ledger,
 * so a coordinator sees the patient's channels and why one is skipped. Linking and merging live in identity-api.ts.
 */
export async function registerConsentRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  app.get<{ Params: { id: string } }>('/api/patients/:id/identities', async (request) => readIdentities(request));
  app.get<{ Params: { id: string } }>('/api/patients/:id/consent', async (request) => readIdentities(request));

  async function readIdentities(request: FastifyRequest) {
    const caller = request.caller;
    if (!caller) throw new UnauthorizedError();
    const { id } = parseInput(PatientParams, request.params);
    if (!(await canAccessPatient(deps.db, caller, id))) throw new NotFoundError('patient');
    const identities = await listIdentityConsent(deps.db, id);
    await appendAudit(deps.db, { actorId: caller.id, action: 'consent.read', patientId: id, ip: request.ip });
    return { patientId: id, identities };
  }
}
