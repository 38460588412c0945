import { request as httpRequest } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { backends } from '../test/databases.ts';
import { databaseFingerprint } from '../test/fingerprint.ts';
import { startHarness, type Harness } from '../test/harness.ts';
import { seedTwoTeams } from '../test/two-teams.ts';

// Issue 13: patient information stays with the people allowed to see it. Each case was reproduced against a
// running instance before its fix; each refused write is checked to have written nothing.
describe.each(backends())('authorisation holes on $name', (backend) => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  /** Runs the request and asserts it changed no row anywhere. */
  async function refusedWithoutWrites(run: () => Promise<{ status: number; text: string }>, status: number) {
    const before = await databaseFingerprint(h!.database.db);
    const response = await run();
    expect(response.status, response.text).toBe(status);
    expect(await databaseFingerprint(h!.database.db)).toEqual(before);
    return response;
  }

  it('search finds only patients the caller may see: a supervisor their teams, an admin everyone', async () => {
    h = await startHarness(backend);
    const t = await seedTwoTeams(h);
    const patientsFound = async (token: string, q: string) => {
      const found = await h!.api('GET', `/api/search?q=${encodeURIComponent(q)}`, { token });
      expect(found.status, found.text).toBe(200);
      return [...new Set((found.json.hits as Array<{ patientId: string }>).map((hit) => hit.patientId))];
    };
    expect(await patientsFound(t.supA.token, 'insulin')).toEqual([]);
    expect(await patientsFound(t.supA.token, 'inhaler')).toEqual([t.patientA]);
    expect(await patientsFound(t.supB.token, 'insulin')).toEqual([t.patientB]);
    expect(await patientsFound(t.ca.token, 'insulin')).toEqual([]);
    expect(await patientsFound(t.admin.token, 'insulin')).toEqual([t.patientB]);
  });

  it('a supervisor cannot set another team\'s coordinator away, move her patients, or read her team\'s queue', async () => {
    h = await startHarness(backend);
    const t = await seedTwoTeams(h);
    const db = h.database.db;

    await refusedWithoutWrites(() => h!.api('PUT', `/api/coordinators/${t.cb.id}/status`, { token: t.supA.token, body: { status: 'away' } }), 404);
    await refusedWithoutWrites(() => h!.api('POST', '/api/routing/reassign', { token: t.supA.token, body: { fromCoordinatorId: t.cb.id, toCoordinatorId: t.supA.id, note: 'mine now' } }), 404);
    // Nor push their own team's patients onto another team's coordinator or team.
    await refusedWithoutWrites(() => h!.api('POST', '/api/routing/reassign', { token: t.supA.token, body: { fromCoordinatorId: t.ca.id, toCoordinatorId: t.cb.id } }), 404);
    await refusedWithoutWrites(() => h!.api('POST', '/api/routing/reassign', { token: t.supA.token, body: { fromCoordinatorId: t.ca.id, toTeamId: t.teamB } }), 404);
    await refusedWithoutWrites(() => h!.api('POST', '/api/supervisor/reassign', { token: t.supA.token, body: { patientIds: [t.patientA], toCoordinatorId: t.cb.id, note: 'yours' } }), 404);
    await refusedWithoutWrites(() => h!.api('POST', '/api/supervisor/reassign', { token: t.supA.token, body: { patientIds: [t.patientA], toTeamId: t.teamB, note: 'yours' } }), 404);
    expect((await h.api('GET', `/api/teams/${t.teamB}/queue`, { token: t.supA.token })).status).toBe(404);
    expect((await h.api('GET', `/api/patients/${t.patientB}/timeline`, { token: t.supA.token })).status).toBe(404);

    // Within their own team all of it works, and an admin may do it anywhere.
    expect((await h.api('GET', `/api/teams/${t.teamA}/queue`, { token: t.supA.token })).status).toBe(200);
    expect((await h.api('GET', `/api/teams/${t.teamB}/queue`, { token: t.admin.token })).status).toBe(200);
    expect((await h.api('PUT', `/api/coordinators/${t.ca.id}/status`, { token: t.supA.token, body: { status: 'away' } })).status).toBe(200);
    const moved = await h.api('POST', '/api/routing/reassign', { token: t.supA.token, body: { fromCoordinatorId: t.ca.id, toCoordinatorId: t.supA.id } });
    expect(moved.json).toEqual({ moved: 1, patientIds: [t.patientA] });
    expect((await h.api('PUT', `/api/coordinators/${t.cb.id}/status`, { token: t.admin.token, body: { status: 'away' } })).status).toBe(200);
    const adminMoved = await h.api('POST', '/api/routing/reassign', { token: t.admin.token, body: { fromCoordinatorId: t.cb.id, toCoordinatorId: t.ca.id } });
    expect(adminMoved.json).toEqual({ moved: 1, patientIds: [t.patientB] });
    expect((await db.query(`SELECT coordinator_id FROM assignments WHERE patient_id = $1`, [t.patientB])).rows[0]).toEqual({ coordinator_id: t.ca.id });
  });

  it('refuses linking a web chat identity by hand, so nobody can take another patient\'s chat', async () => {
    h = await startHarness(backend, { webchat: true });
    const t = await seedTwoTeams(h);
    for (const body of [
      { channel: 'webchat', address: `patient:${t.patientB}` },
      { channel: 'webchat', address: 'anything' },
      { channel: 'messenger', address: `patient:${t.patientB}` },
    ]) {
      const refused = await refusedWithoutWrites(() => h!.api('POST', `/api/patients/${t.patientA}/identities`, { token: t.ca.token, body }), 400);
      expect(JSON.parse(refused.text).code).toBe('system_identity');
    }
  });

  it('checks the bearer token on the route the router matched, however the path is encoded', async () => {
    h = await startHarness(backend);
    await seedTwoTeams(h);
    for (const path of ['/%61pi/coordinators', '/%61pi/teams', '/%61pi/canned-responses', '/api/%63oordinators', '/api/coordinators']) {
      const response = await fetch(h.baseUrl + path);
      expect(response.status, path).toBe(401);
    }
  });

  it('marks every API answer no-store, and compares a sign-in\'s Origin with the public URL, not the Host header', async () => {
    h = await startHarness(backend);
    const t = await seedTwoTeams(h);
    const timeline = await fetch(`${h.baseUrl}/api/patients/${t.patientA}/timeline`, { headers: { authorization: `Bearer ${t.ca.token}` } });
    expect(timeline.status).toBe(200);
    expect(timeline.headers.get('cache-control')).toBe('no-store');
    expect((await fetch(`${h.baseUrl}/api/patients/${t.patientB}/timeline`, { headers: { authorization: `Bearer ${t.ca.token}` } })).headers.get('cache-control')).toBe('no-store');
    expect(timeline.headers.get('strict-transport-security')).toBeNull();

    const url = new URL(h.baseUrl);
    const signIn = (origin: string, host: string) =>
      new Promise<number>((resolve, reject) => {
        const body = JSON.stringify({ email: 'nobody@test.switchboard', password: 'wrong password' });
        const req = httpRequest({ host: url.hostname, port: url.port, path: '/api/session/login', method: 'POST', headers: { origin, host, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
          res.resume();
          resolve(res.statusCode!);
        });
        req.on('error', reject);
        req.end(body);
      });
    expect(await signIn('http://evil.example', 'evil.example')).toBe(403);
    // The real origin gets as far as checking the password.
    expect(await signIn(url.origin, url.host)).toBe(401);
  });

  it('sends Strict-Transport-Security when the public URL is https', async () => {
    h = await startHarness(backend, { app: { publicBaseUrl: 'https://switchboard.example' } });
    const health = await fetch(`${h.baseUrl}/api/health`);
    expect(health.headers.get('strict-transport-security')).toBe('max-age=31536000');
    expect(health.headers.get('cache-control')).toBe('no-store');
  });
});
