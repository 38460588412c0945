import { timingSafeEqual } from 'node:crypto';
import { parseCookie, stringifySetCookie } from 'cookie';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { appendAudit } from '../db/audit.ts';
import { findCoordinatorForLogin, setCoordinatorDisabled, setCoordinatorPassword, type Coordinator } from '../db/coordinators.ts';
import type { Db } from '../db/db.ts';
import { admitLoginAttempt, clearLoginAttempts, createWebSession, recordLoginFailure, revokeAllSessions, revokeWebSession, touchWebSession } from '../db/web-sessions.ts';
import { AppError, BadRequestError, ForbiddenError, NotFoundError, UnauthorizedError } from '../errors.ts';
import { DECOY_PASSWORD_HASH, hashPassword, verifyPassword } from '../security/passwords.ts';
import { parseInput, type AppDeps } from './server.ts';
import { ADMIN, CALLER, PUBLIC, callerOf, policy } from './policy.ts';

export const SESSION_COOKIE = 'sb_session';
export const CSRF_HEADER = 'x-csrf-token';
export const DEFAULT_SESSION_IDLE_MS = 2 * 3_600_000;
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

const LoginBody = z.object({ email: z.email().max(320), password: z.string().min(1).max(1024) });

/**
 * The cookie is Secure whenever the public URL is https, and also on loopback http: browsers treat
 * http://localhost and http://127.0.0.1 as secure contexts and keep Secure cookies there (checked in the browser
 * test). Only a plain-http non-loopback deployment (a LAN demo) gets a cookie without Secure, since the browser
 * would otherwise drop it.
 */
export function isSecureCookie(publicBaseUrl: string): boolean {
  const url = new URL(publicBaseUrl);
  return url.protocol === 'https:' || ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname);
}

const sessionIdOf = (request: FastifyRequest): string | undefined => {
  const header = request.headers.cookie;
  return header ? parseCookie(header)[SESSION_COOKIE] : undefined;
};

function sameToken(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

/**
 * The coordinator behind the request's session cookie, or null when there is none. A state-changing request
 * must also carry the session's CSRF token in `x-csrf-token`: a cross-site form or fetch can make the browser
 * send the cookie but cannot read the token (it is only returned by same-origin JSON).
 */
export async function sessionCaller(db: Db, request: FastifyRequest, idleMs = DEFAULT_SESSION_IDLE_MS): Promise<Coordinator | null> {
  const sessionId = sessionIdOf(request);
  if (!sessionId) return null;
  const session = await touchWebSession(db, sessionId, idleMs);
  if (!session) throw new UnauthorizedError('the session has expired or was revoked; sign in again');
  if (!SAFE_METHODS.has(request.method)) {
    const token = request.headers[CSRF_HEADER];
    if (typeof token !== 'string' || !sameToken(token, session.csrfToken)) throw new ForbiddenError('csrf', 'a valid x-csrf-token header is required');
  }
  return session.coordinator;
}

/**
 * Checks an email and password for either sign-in route. Admission (web-sessions.ts admitLoginAttempt) is decided
 * before the password hash is evaluated; a refusal is `429 locked_out` (audited) and evaluates nothing.
 */
export async function authenticate(db: Db, args: { email: string; password: string; ip: string; via: 'token' | 'session' }): Promise<Coordinator & { passwordHash: string; disabled: boolean }> {
  const { email, ip } = args;
  const admission = await admitLoginAttempt(db, { email, ip });
  if (!admission.allowed) {
    await appendAudit(db, { actorId: null, action: 'auth.login_locked', detail: { email, by: admission.reason, via: args.via }, ip });
    const minutes = Math.max(1, Math.ceil(admission.retryAfterMs / 60_000));
    throw new AppError(429, 'locked_out', `too many failed sign-ins; try again in ${minutes} min`, { details: { retryAfterS: Math.ceil(admission.retryAfterMs / 1000) } });
  }
  const coordinator = await findCoordinatorForLogin(db, email);
  const valid = await verifyPassword(args.password, coordinator?.passwordHash ?? DECOY_PASSWORD_HASH);
  if (!coordinator || !valid) {
    await recordLoginFailure(db, { ip });
    await appendAudit(db, { actorId: coordinator?.id ?? null, action: 'auth.login_failed', detail: { email, via: args.via }, ip });
    throw new AppError(401, 'invalid_credentials', 'email or password is wrong');
  }
  await clearLoginAttempts(db, email);
  // Told only to someone who knew the password, so it reveals nothing about which accounts exist.
  if (coordinator.disabled) {
    await appendAudit(db, { actorId: coordinator.id, action: 'auth.login_disabled', detail: { via: args.via }, ip });
    throw new ForbiddenError('account_disabled', 'this account is disabled; ask an administrator');
  }
  return coordinator;
}

export async function registerSessionRoutes(app: FastifyInstance, deps: AppDeps & { sessionIdleMs?: number }): Promise<void> {
  const { db } = deps;
  const idleMs = deps.sessionIdleMs ?? DEFAULT_SESSION_IDLE_MS;
  const secure = isSecureCookie(deps.publicBaseUrl);
  const publicOrigin = new URL(deps.publicBaseUrl).origin;

  const setCookie = (reply: FastifyReply, value: string, maxAgeS: number) =>
    reply.header('set-cookie', stringifySetCookie({ name: SESSION_COOKIE, value, httpOnly: true, secure, sameSite: 'strict', path: '/', maxAge: maxAgeS }));

  app.post('/api/session/login', policy(PUBLIC), async (request, reply) => {
    // Login CSRF: a form on another site may post here; refuse any browser request from a foreign origin.
    const origin = request.headers.origin;
    // Compared with the configured public origin only: the Host header is the client's to choose.
    if (origin && origin !== publicOrigin) throw new ForbiddenError('csrf', 'cross-origin sign-in refused');
    const { email, password } = parseInput(LoginBody, request.body);
    const coordinator = await authenticate(db, { email, password, ip: request.ip, via: 'session' });
    const absoluteMs = deps.tokenTtlMs;
    const session = await createWebSession(db, { coordinatorId: coordinator.id, idleMs: Math.min(idleMs, absoluteMs), absoluteMs, ip: request.ip, userAgent: request.headers['user-agent'] ?? null });
    await appendAudit(db, { actorId: coordinator.id, action: 'auth.login', detail: { via: 'session' }, ip: request.ip });
    setCookie(reply, session.sessionId, Math.floor(absoluteMs / 1000));
    const { passwordHash: _hash, disabled: _disabled, ...me } = coordinator;
    return reply.send({ coordinator: me, csrfToken: session.csrfToken, expiresAt: session.expiresAt });
  });

  /** Who the cookie belongs to, and the CSRF token the app must send back (the app calls this on load). */
  app.get('/api/session', policy(CALLER), async (request) => {
    const sessionId = sessionIdOf(request);
    const session = sessionId ? await touchWebSession(db, sessionId, idleMs) : null;
    if (!session) throw new UnauthorizedError('no session');
    return { coordinator: session.coordinator, csrfToken: session.csrfToken, expiresAt: session.expiresAt };
  });

  app.post('/api/session/logout', policy(CALLER), async (request, reply) => {
    const sessionId = sessionIdOf(request);
    if (sessionId) await revokeWebSession(db, sessionId);
    if (request.caller) await appendAudit(db, { actorId: request.caller.id, action: 'auth.logout', detail: { via: 'session' }, ip: request.ip });
    setCookie(reply, '', 0);
    return reply.status(204).send();
  });

  /** Signs the caller out everywhere: every browser session and bearer token. */
  app.post('/api/session/revoke-all', policy(CALLER), async (request, reply) => {
    const caller = callerOf(request);
    const revoked = await revokeAllSessions(db, caller.id);
    await appendAudit(db, { actorId: caller.id, action: 'auth.revoke_all', detail: { revoked }, ip: request.ip });
    setCookie(reply, '', 0);
    return reply.send({ revoked });
  });

  app.post('/api/admin/coordinators/:id/revoke-sessions', policy(ADMIN), async (request, reply) => {
    const caller = callerOf(request);
    const { id } = parseInput(z.object({ id: z.uuid() }), request.params);
    const revoked = await revokeAllSessions(db, id);
    await appendAudit(db, { actorId: caller.id, action: 'auth.revoke_sessions', detail: { coordinatorId: id, revoked }, ip: request.ip });
    return reply.send({ revoked });
  });

  /**
   * Account control for admins. Disabling and a password reset revoke every session and token of the account and
   * close its open live streams on every web process (notify.ts SESSIONS_REVOKED_CHANNEL); a disabled account
   * cannot sign in (403 account_disabled). A reset sets the password the admin chose (≥ 12 characters), to be
   * handed over out of band; no password is generated or shown by the server.
   */
  app.post('/api/admin/coordinators/:id/disable', policy(ADMIN), async (request, reply) => {
    const caller = callerOf(request);
    const { id } = parseInput(CoordinatorParams, request.params);
    if (id === caller.id) throw new BadRequestError('cannot_disable_self', 'an admin cannot disable their own account');
    const coordinator = await db.transaction(async (tx) => {
      const updated = await setCoordinatorDisabled(tx, id, true);
      if (!updated) throw new NotFoundError('coordinator');
      return { updated, revoked: await revokeAllSessions(tx, id) };
    });
    await appendAudit(db, { actorId: caller.id, action: 'coordinator.disable', detail: { coordinatorId: id, revoked: coordinator.revoked }, ip: request.ip });
    return reply.send({ id, disabled: true, revoked: coordinator.revoked });
  });

  app.post('/api/admin/coordinators/:id/enable', policy(ADMIN), async (request, reply) => {
    const caller = callerOf(request);
    const { id } = parseInput(CoordinatorParams, request.params);
    if (!(await setCoordinatorDisabled(db, id, false))) throw new NotFoundError('coordinator');
    await appendAudit(db, { actorId: caller.id, action: 'coordinator.enable', detail: { coordinatorId: id }, ip: request.ip });
    return reply.send({ id, disabled: false });
  });

  app.post('/api/admin/coordinators/:id/password', policy(ADMIN), async (request, reply) => {
    const caller = callerOf(request);
    const { id } = parseInput(CoordinatorParams, request.params);
    const { password } = parseInput(ResetPasswordBody, request.body);
    const passwordHash = await hashPassword(password);
    const result = await db.transaction(async (tx) => {
      const updated = await setCoordinatorPassword(tx, id, passwordHash);
      if (!updated) throw new NotFoundError('coordinator');
      await clearLoginAttempts(tx, updated.email);
      return { revoked: await revokeAllSessions(tx, id) };
    });
    await appendAudit(db, { actorId: caller.id, action: 'coordinator.password_reset', detail: { coordinatorId: id, revoked: result.revoked }, ip: request.ip });
    return reply.send({ id, revoked: result.revoked });
  });
}

const CoordinatorParams = z.object({ id: z.uuid() });
const ResetPasswordBody = z.object({ password: z.string().min(12, 'passwords need at least 12 characters').max(1024) });

