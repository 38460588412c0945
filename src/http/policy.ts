/**
 * Who may call each route (issue 13). Every route declares a policy in its route options
 * (`{ config: policy(...) }`); a route without one makes startup fail, so a new route cannot forget it. The policy is
 * enforced in one onRequest hook on the route the router matched (its decoded pattern and params), never on the
 * raw URL. Handlers get the authenticated coordinator from `callerOf(request)`.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { CoordinatorRole } from '../core/types.ts';
import { findCoordinatorByToken, type Coordinator } from '../db/coordinators.ts';
import type { Db } from '../db/db.ts';
import { isTeamMember } from '../db/handoffs.ts';
import { canSeePatient, supervisesCoordinator } from '../db/visibility.ts';
import { ForbiddenError, NotFoundError, UnauthorizedError } from '../errors.ts';
import { sessionCaller } from './session-api.ts';
import { parseInput } from './server.ts';

declare module 'fastify' {
  interface FastifyRequest {
    caller: Coordinator | null;
  }
  interface FastifyContextConfig {
    policy?: RoutePolicy;
  }
}

/**
 * Which records of the caller's a route's path names, checked before the handler runs (404 when out of scope,
 * exactly as for a record that does not exist):
 * - patient: the `:param` patient must be visible to the caller (src/db/visibility.ts);
 * - team: the caller must belong to the `:param` team (a team's supervisors are its members); admins: any team;
 * - coordinator: the `:param` coordinator is the caller, or (supervisors) a member of a team they supervise;
 *   another coordinator's record is a 403 for a coordinator; admins: anyone;
 * - handler: the path names a record (a visit, recording, merge, handoff, alert) or the body names patients, whose
 *   patient the handler must look up and check with the same visibility; `what` says which. The route matrix test
 *   (policy-matrix.int.test.ts) covers these routes like the others.
 */
export type RouteScope =
  | { patient: string }
  | { team: string }
  | { coordinator: string }
  | { handler: string };

export type RoutePolicy =
  /** Anyone: sign-in, health, the app's and the chat's static pages, the visit pages (which carry no PHI). */
  | { auth: 'public' }
  /** A provider's webhook: the adapter checks its signature (or, for Meta's GET, the verify token) before reading anything. */
  | { auth: 'webhook'; signature: 'twilio' | 'meta' | 'telnyx' }
  /** A patient's signed link (web chat token in Authorization, or a visit's join token as the socket's first message): checked by the route. */
  | { auth: 'link'; link: 'webchat' | 'visit' }
  /** Authorization: Bearer METRICS_TOKEN, checked by the route (ops-api.ts). */
  | { auth: 'metrics-token' }
  /** A coordinator's bearer token or browser session (with its CSRF token on writes); optionally certain roles and a scope. */
  | { auth: 'caller'; roles?: readonly CoordinatorRole[]; scope?: RouteScope };

/** Route options carrying a policy: `app.get(path, policy({ auth: 'public' }), handler)`. */
export const policy = (routePolicy: RoutePolicy) => ({ config: { policy: routePolicy } });

export const PUBLIC = { auth: 'public' } as const satisfies RoutePolicy;
export const CALLER = { auth: 'caller' } as const satisfies RoutePolicy;
export const SUPERVISOR = { auth: 'caller', roles: ['supervisor', 'admin'] } as const satisfies RoutePolicy;
export const ADMIN = { auth: 'caller', roles: ['admin'] } as const satisfies RoutePolicy;
/** Any coordinator, on a patient they may see (`:id`). */
export const PATIENT = { auth: 'caller', scope: { patient: 'id' } } as const satisfies RoutePolicy;

/** The authenticated coordinator (the policy hook has set it on every `auth: 'caller'` route). */
export function callerOf(request: FastifyRequest): Coordinator {
  if (!request.caller) throw new UnauthorizedError();
  return request.caller;
}

/** A patient id in a path: anything up to 64 characters; one that is no patient's is a 404, like one the caller may not see. */
export const PatientParams = z.object({ id: z.string().max(64) });

/** The caller and the `:id` patient of a patient-scoped route (the hook has checked the caller may see them). */
export function patientRoute(request: FastifyRequest): { caller: Coordinator; patientId: string } {
  return { caller: callerOf(request), patientId: parseInput(PatientParams, request.params).id };
}

/** For handlers whose patient comes from a record or the body: 404 (as `what`) unless the caller may see them. */
export async function requirePatientVisible(db: Db, caller: Coordinator, patientId: string, what = 'patient'): Promise<void> {
  if (!(await canSeePatient(db, caller, patientId))) throw new NotFoundError(what);
}

export interface RegisteredRoute {
  method: string;
  url: string;
  policy: RoutePolicy;
}

/**
 * Installs the policy: refuses at startup any route registered without one, and enforces each on its route.
 * Call before registering routes. `onRouteRegistered` sees every route (the route-table test collects them).
 */
export function installPolicy(app: FastifyInstance, deps: { db: Db; sessionIdleMs?: number; onRouteRegistered?: (route: RegisteredRoute) => void }): void {
  const { db } = deps;
  app.decorateRequest('caller', null);

  app.addHook('onRoute', (route) => {
    const routePolicy = (route.config as { policy?: RoutePolicy } | undefined)?.policy;
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (!routePolicy) throw new Error(`route ${methods.join(',')} ${route.url} declares no policy (config.policy, src/http/policy.ts)`);
    for (const method of methods) deps.onRouteRegistered?.({ method, url: route.url, policy: routePolicy });
  });

  app.addHook('onRequest', async (request) => {
    const routePolicy = request.routeOptions.config?.policy;
    // No route matched (the 404 handler): nothing to protect.
    if (!routePolicy || routePolicy.auth !== 'caller') return;
    const caller = await authenticate(request);
    if (routePolicy.roles && !routePolicy.roles.includes(caller.role)) {
      throw routePolicy.roles.includes('supervisor')
        ? new ForbiddenError('supervisor_only', `this needs the ${routePolicy.roles.join(' or ')} role`)
        : new ForbiddenError('admin_only', 'this needs the admin role');
    }
    const scope = routePolicy.scope;
    if (!scope || 'handler' in scope) return;
    const params = request.params as Record<string, string | undefined>;
    if ('patient' in scope) {
      const id = parseInput(z.string().max(64), params[scope.patient]);
      if (!(await canSeePatient(db, caller, id))) throw new NotFoundError('patient');
    } else if ('team' in scope) {
      const id = parseInput(z.uuid(), params[scope.team]);
      if (caller.role !== 'admin' && !(await isTeamMember(db, caller.id, id))) throw new NotFoundError('team');
    } else {
      const id = parseInput(z.uuid(), params[scope.coordinator]);
      if (id !== caller.id && caller.role === 'coordinator') throw new ForbiddenError('not_yours', 'coordinators may only set their own status');
      if (!(await supervisesCoordinator(db, caller, id))) throw new NotFoundError('coordinator');
    }
  });

  /** A bearer token, or else the browser session cookie (see session-api.ts). */
  async function authenticate(request: FastifyRequest): Promise<Coordinator> {
    const header = request.headers.authorization;
    const token = header?.startsWith('Bearer ') ? header.slice(7).trim() : undefined;
    if (!token) {
      request.caller = await sessionCaller(db, request, deps.sessionIdleMs);
      if (request.caller) return request.caller;
      throw new UnauthorizedError('an Authorization: Bearer token is required');
    }
    const caller = await findCoordinatorByToken(db, token);
    if (!caller) throw new UnauthorizedError('the token is invalid, expired or revoked');
    request.caller = caller;
    return caller;
  }
}
