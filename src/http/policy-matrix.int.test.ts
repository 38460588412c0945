import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVisit } from '../db/visits.ts';
import { createOpsMetrics } from '../ops/metrics.ts';
import { backends } from '../test/databases.ts';
import { databaseFingerprint } from '../test/fingerprint.ts';
import { startHarness, type Harness } from '../test/harness.ts';
import { seedTwoTeams, type TwoTeams } from '../test/two-teams.ts';
import { installPolicy, type RegisteredRoute } from './policy.ts';

// Issue 13: every route declares who may call it (src/http/policy.ts). This suite takes the route table Fastify
// actually registered, with every optional feature on, and calls each coordinator API route as each role, on
// its own team's and on the other team's records. It grows with the routes: a new route is in the matrix.

describe('the route table', () => {
  it('refuses at startup a route that declares no policy', async () => {
    const app = Fastify({ logger: false });
    // No request is made, so no database is needed.
    installPolicy(app, { db: {} as never });
    const register = async () => {
      app.get('/api/forgot-its-policy', async () => ({ ok: true }));
      await app.ready();
    };
    await expect(register()).rejects.toThrow(/declares no policy/);
    await app.close().catch(() => {});
  });
});

describe.each(backends())('authorisation matrix on $name', (backend) => {
  let h: Harness;
  let t: TwoTeams;
  let mediaDir: string;
  const routes: RegisteredRoute[] = [];
  /** Records of team B's patient that are not the patient itself (their routes look the patient up). */
  const other = { visit: '', handoff: '', alert: '' };

  beforeAll(async () => {
    mediaDir = await mkdtemp(join(tmpdir(), 'sb-matrix-'));
    h = await startHarness(backend, {
      webchat: true,
      meta: {},
      calls: { media: { kind: 'local', dir: mediaDir } },
      app: { metrics: createOpsMetrics(), metricsToken: 'matrix-metrics-token', onRouteRegistered: (route) => routes.push(route) },
    });
    t = await seedTwoTeams(h);
    const db = h.database.db;
    other.visit = (await createVisit(db, { patientId: t.patientB, coordinatorId: t.cb.id, ttlMs: 3_600_000 })).visit.id;
    const handoff = await h.api('POST', `/api/patients/${t.patientB}/handoff`, { token: t.cb.token, body: { toCoordinatorId: t.supB.id, note: 'please take over', requireAccept: true } });
    expect(handoff.status, handoff.text).toBe(201);
    other.handoff = handoff.json.handoffId;
    other.alert = (
      await db.query<{ id: string }>(
        `INSERT INTO alerts (rule_id, subject, state, summary, started_at, firing_at, patient_id) VALUES ('patient-wait', $1, 'firing', 'waiting', now(), now(), $2) RETURNING id`,
        [`patient:${t.patientB}`, t.patientB],
      )
    ).rows[0]!.id;
  }, 300_000);
  afterAll(async () => {
    await h?.close();
    await rm(mediaDir, { recursive: true, force: true });
  });

  const callerRoutes = () => routes.filter((route) => route.method !== 'HEAD' && route.policy.auth === 'caller');

  /** Fills a route's path with team A's (`own`) or team B's (`other`) records. */
  function pathFor(route: RegisteredRoute, side: 'own' | 'other'): string {
    const b = side === 'other';
    const scope = route.policy.auth === 'caller' ? route.policy.scope : undefined;
    let id: string = randomUUID();
    if (scope && 'patient' in scope) id = b ? t.patientB : t.patientA;
    else if (scope && 'team' in scope) id = b ? t.teamB : t.teamA;
    else if (scope && 'coordinator' in scope) id = b ? t.cb.id : t.ca.id;
    else if (route.url.startsWith('/api/visits/')) id = b ? other.visit : randomUUID();
    else if (route.url.startsWith('/api/handoffs/')) id = b ? other.handoff : randomUUID();
    else if (route.url.startsWith('/api/ops/alerts/')) id = b ? other.alert : randomUUID();
    return route.url
      .replace(':id', id)
      .replace(':coordinatorId', b ? t.cb.id : t.ca.id)
      .replace(':mergeId', randomUUID())
      .replace(':version', '1')
      .replace(':index', '0');
  }

  /** A body naming team B's records, for routes whose body says whom they act on. */
  function bodyFor(route: RegisteredRoute): unknown {
    if (route.url === '/api/routing/reassign') return { fromCoordinatorId: t.cb.id, toCoordinatorId: t.supA.id, note: 'take over' };
    if (route.url === '/api/supervisor/reassign') return { patientIds: [t.patientB], toCoordinatorId: t.supA.id, note: 'take over' };
    if (route.url === '/api/routing/dry-run') return { patientId: t.patientB, message: { text: 'hello', channel: 'sms' } };
    if (route.url === '/api/patients/:id/merge') return { patientId: t.patientB };
    if (route.url === '/api/coordinators/:id/status') return { status: 'away' };
    return {};
  }

  const call = (route: RegisteredRoute, path: string, token?: string) =>
    h.api(route.method, path, { ...(token ? { token } : {}), ...(route.method === 'GET' || route.method === 'DELETE' ? {} : { body: bodyFor(route) }) });

  it('registers every route with a policy, and every patient route is scoped to the patient', () => {
    expect(routes.length).toBeGreaterThan(60);
    for (const route of routes) expect(route.policy, `${route.method} ${route.url}`).toBeDefined();
    for (const route of routes.filter((r) => r.url.startsWith('/api/'))) {
      // Only sign-in and health are public among the API routes.
      if (route.policy.auth !== 'caller') expect(['/api/health', '/api/auth/login', '/api/session/login'], `${route.method} ${route.url}`).toContain(route.url);
    }
    for (const route of callerRoutes().filter((r) => r.url.startsWith('/api/patients/:id'))) {
      expect(route.policy.auth === 'caller' && route.policy.scope && 'patient' in route.policy.scope, `${route.method} ${route.url} must be patient-scoped`).toBe(true);
    }
  });

  it('answers 401 to every coordinator route without a token, and writes nothing', async () => {
    const before = await databaseFingerprint(h.database.db);
    for (const route of callerRoutes()) {
      const response = await call(route, pathFor(route, 'other'));
      expect(response.status, `${route.method} ${route.url}: ${response.text}`).toBe(401);
    }
    expect(await databaseFingerprint(h.database.db)).toEqual(before);
  });

  it('refuses each role the routes above it (403) and the other team\'s records (404 or 403), writing nothing', async () => {
    const actors = [
      { name: 'coordinator A', role: 'coordinator', token: t.ca.token },
      { name: 'supervisor A', role: 'supervisor', token: t.supA.token },
    ] as const;
    const before = await databaseFingerprint(h.database.db);
    const checked: string[] = [];
    for (const actor of actors) {
      for (const route of callerRoutes()) {
        if (route.policy.auth !== 'caller') continue;
        const label = `${actor.name}: ${route.method} ${route.url}`;
        const refusedRole = route.policy.roles !== undefined && !route.policy.roles.includes(actor.role);
        // Routes open to every coordinator on nothing in particular (sign out, the directory) are not refusals.
        if (!refusedRole && !route.policy.scope) continue;
        const response = await call(route, pathFor(route, 'other'), actor.token);
        if (refusedRole) {
          expect(response.status, `${label}: ${response.text}`).toBe(403);
        } else if (route.policy.scope && 'handler' in route.policy.scope && route.url === '/api/supervisor/reassign') {
          // Bulk: each patient gets its own answer; another team's is "not_found".
          expect(response.json?.results, label).toEqual([{ patientId: t.patientB, ok: false, error: 'not_found' }]);
        } else {
          expect([403, 404], `${label}: ${response.status} ${response.text}`).toContain(response.status);
        }
        checked.push(label);
      }
    }
    expect(await databaseFingerprint(h.database.db)).toEqual(before);
    // The matrix really ran over the scoped routes (patients, teams, coordinators, visits, handoffs, alerts).
    expect(checked.length).toBeGreaterThan(40);
  });

  it('lets each role read its own team\'s records, and an admin everyone\'s', async () => {
    const reads = callerRoutes().filter((route) => route.method === 'GET' && route.policy.auth === 'caller' && route.policy.scope && !('handler' in route.policy.scope));
    expect(reads.length).toBeGreaterThanOrEqual(8);
    for (const route of reads) {
      for (const [name, token, side] of [['coordinator A', t.ca.token, 'own'], ['supervisor A', t.supA.token, 'own'], ['admin', t.admin.token, 'other']] as const) {
        const response = await call(route, pathFor(route, side), token);
        expect([401, 403, 404], `${name}: ${route.method} ${route.url}: ${response.status} ${response.text}`).not.toContain(response.status);
      }
    }
  });
});
