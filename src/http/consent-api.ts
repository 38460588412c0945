import type { FastifyInstance, FastifyRequest } from 'fastify';
import { appendAudit } from '../db/audit.ts';
import { listIdentityConsent } from '../db/consent.ts';
import type { AppDeps } from './server.ts';
import { PATIENT, patientRoute, policy } from './policy.ts';

/**
 * GET /api/patients/:id/identities (and its alias /consent): each identity with its consent state and ledger,
 * so a coordinator sees the patient's channels and why one is skipped. Linking and merging live in identity-api.ts.
 */
export async function registerConsentRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  app.get<{ Params: { id: string } }>('/api/patients/:id/identities', policy(PATIENT), async (request) => readIdentities(request));
  app.get<{ Params: { id: string } }>('/api/patients/:id/consent', policy(PATIENT), async (request) => readIdentities(request));

  async function readIdentities(request: FastifyRequest) {
    const { caller, patientId: id } = patientRoute(request);
    const identities = await listIdentityConsent(deps.db, id);
    await appendAudit(deps.db, { actorId: caller.id, action: 'consent.read', patientId: id, ip: request.ip });
    return { patientId: id, identities };
  }
}
