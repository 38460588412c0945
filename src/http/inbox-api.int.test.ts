import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { backends } from '../test/databases.ts';
import pino from 'pino';
import { createPostgresDb } from '../db/db.ts';
import { startWeb } from '../services/web.ts';
import { eventually, freePort, startHarness, type Harness } from '../test/harness.ts';

interface WebLogin {
  cookie: string;
  csrf: string;
  setCookie: string;
}

async function webLogin(h: Harness, email: string, password: string): Promise<WebLogin> {
  const response = await fetch(`${h.baseUrl}/api/session/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, password }) });
  expect(response.status).toBe(200);
  const setCookie = response.headers.get('set-cookie')!;
  const json = (await response.json()) as { csrfToken: string };
  return { cookie: setCookie.split(';')[0]!, csrf: json.csrfToken, setCookie };
}

async function web(h: Harness, login: WebLogin, method: string, path: string, body?: unknown, { csrf = true } = {}) {
  const headers: Record<string, string> = { cookie: login.cookie };
  if (csrf) headers['x-csrf-token'] = login.csrf;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(h.baseUrl + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  return { status: response.status, json: text ? JSON.parse(text) : null };
}

interface LiveEvent {
  id?: string;
  event: string;
  data: any;
}

/** An SSE client over fetch: collects parsed events until closed. */
function openLive(h: Harness, login: WebLogin, lastEventId?: string) {
  const events: LiveEvent[] = [];
  const controller = new AbortController();
  const headers: Record<string, string> = { cookie: login.cookie };
  if (lastEventId) headers['last-event-id'] = lastEventId;
  const done = (async () => {
    const response = await fetch(`${h.baseUrl}/api/live`, { headers, signal: controller.signal });
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event: LiveEvent = { event: 'message', data: null };
        for (const line of block.split('\n')) {
          if (line.startsWith('id: ')) event.id = line.slice(4);
          else if (line.startsWith('event: ')) event.event = line.slice(7);
          else if (line.startsWith('data: ')) event.data = JSON.parse(line.slice(6));
        }
        if (event.data !== null) events.push(event);
      }
    }
  })().catch(() => {});
  return {
    events,
    async close() {
      controller.abort();
      await done;
    },
  };
}

describe.each(backends().filter((b) => b.name === 'postgres'))('live updates across server processes on $name', (backend) => {
  // PGlite is one process by design (README), so this runs on PostgreSQL only.
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness(backend);
  });
  afterEach(async () => {
    await h.close();
  });

  it('a browser on one web process hears a message written through another', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    await h.sendSms('+15550000061', 'first');
    const other = createPostgresDb({ connectionString: h.database.url!, poolSize: 4 });
    const port = await freePort();
    const otherWeb = await startWeb({ db: other, logger: pino({ level: 'silent' }), adapters: h.adapters, publicBaseUrl: `http://127.0.0.1:${port}`, tokenTtlMs: 3_600_000, host: '127.0.0.1', port });
    const otherHarness = { ...h, baseUrl: `http://127.0.0.1:${port}` } as Harness;
    const login = await webLogin(otherHarness, ada.email, ada.password);
    const live = openLive(otherHarness, login);
    try {
      await eventually(() => live.events.some((e) => e.event === 'hello'), { what: 'hello' });
      // Written by the harness's process (its own pool and LISTEN connection), heard on the other one.
      await h.sendSms('+15550000061', 'second, via process A');
      await eventually(() => live.events.find((e) => e.event === 'activity' && e.data.kind === 'message'), { what: 'message event on process B' });
    } finally {
      await live.close();
      await otherWeb.stop();
      await other.close();
    }
  });
});

describe.each(backends())('coordinator web API on $name', (backend) => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness(backend);
  });
  afterEach(async () => {
    await h.close();
  });

  async function patientOf(phone: string, body: string): Promise<string> {
    await h.sendSms(phone, body);
    const row = await h.database.db.query<{ patient_id: string }>(`SELECT patient_id FROM channel_identities WHERE address = $1`, [phone]);
    return row.rows[0]!.patient_id;
  }

  it('signs in with an httpOnly SameSite=Strict cookie, demands the CSRF token on writes, and logs out', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    const patientId = await patientOf('+15550000001', 'hello');
    const login = await webLogin(h, ada.email, ada.password);
    expect(login.setCookie).toMatch(/HttpOnly/i);
    expect(login.setCookie).toMatch(/SameSite=Strict/i);
    expect(login.setCookie).toMatch(/Secure/i); // loopback counts as a secure context

    expect((await web(h, login, 'GET', '/api/session')).json.coordinator.id).toBe(ada.id);
    expect((await web(h, login, 'GET', `/api/patients/${patientId}/timeline`, undefined, { csrf: false })).status).toBe(200);
    const forged = await web(h, login, 'POST', `/api/patients/${patientId}/notes`, { note: 'x' }, { csrf: false });
    expect(forged.status).toBe(403);
    expect(forged.json.code).toBe('csrf');
    const wrong = await web(h, { ...login, csrf: 'not-the-token' }, 'POST', `/api/patients/${patientId}/notes`, { note: 'x' });
    expect(wrong.status).toBe(403);
    expect((await web(h, login, 'POST', `/api/patients/${patientId}/notes`, { note: 'called pharmacy' })).status).toBe(201);

    expect((await web(h, login, 'POST', '/api/session/logout')).status).toBe(204);
    expect((await web(h, login, 'GET', '/api/session')).status).toBe(401);
    // The bearer API keeps working alongside.
    expect((await h.api('GET', '/api/me', { token: ada.token })).status).toBe(200);
  });

  it('expires idle sessions and revokes them everywhere', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    const login = await webLogin(h, ada.email, ada.password);
    await h.database.db.query(`UPDATE web_sessions SET expires_at = now() - interval '1 second'`);
    expect((await web(h, login, 'GET', '/api/session')).status).toBe(401);
    const second = await webLogin(h, ada.email, ada.password);
    const admin = await h.createCoordinator({ name: 'Root', role: 'admin' });
    expect((await h.api('POST', `/api/admin/coordinators/${ada.id}/revoke-sessions`, { token: admin.token })).json.revoked).toBeGreaterThanOrEqual(2);
    expect((await web(h, second, 'GET', '/api/session')).status).toBe(401);
    expect((await h.api('GET', '/api/me', { token: ada.token })).status).toBe(401);
  });

  it('locks an account out after repeated failures, on both sign-in routes, from the database', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    for (let i = 0; i < 5; i++) {
      const failed = await h.api('POST', '/api/session/login', { body: { email: ada.email, password: 'wrong password' } });
      expect(failed.status).toBe(401);
    }
    const locked = await h.api('POST', '/api/session/login', { body: { email: ada.email, password: ada.password } });
    expect(locked.status).toBe(429);
    expect(locked.json.code).toBe('locked_out');
    expect((await h.api('POST', '/api/auth/login', { body: { email: ada.email, password: ada.password } })).status).toBe(429);
    const attempts = await h.database.db.query<{ attempts: number }>(`SELECT attempts FROM login_attempts WHERE key = $1`, [`account:${ada.email}`]);
    expect(attempts.rows[0]?.attempts).toBe(7);
    // The window passing unlocks it.
    await h.database.db.query(`UPDATE login_attempts SET window_start = now() - interval '16 minutes'`);
    expect((await h.api('POST', '/api/session/login', { body: { email: ada.email, password: ada.password } })).status).toBe(200);
    const audit = await h.database.db.query<{ action: string }>(`SELECT action FROM audit_log WHERE action LIKE 'auth.%'`);
    expect(audit.rows.map((r) => r.action)).toEqual(expect.arrayContaining(['auth.login_failed', 'auth.login_locked', 'auth.login']));
  });

  it('scopes patients by role: own and team queue for coordinators, supervised teams for supervisors, 404 otherwise', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    const adaPatient = await patientOf('+15550000011', 'for ada');
    const grace = await h.createCoordinator({ name: 'Grace' });
    const gracePatient = await patientOf('+15550000012', 'for grace');
    const assigned = await h.database.db.query<{ patient_id: string; coordinator_id: string }>(`SELECT patient_id, coordinator_id FROM assignments`);
    expect(Object.fromEntries(assigned.rows.map((r) => [r.patient_id, r.coordinator_id]))).toEqual({ [adaPatient]: ada.id, [gracePatient]: grace.id });

    expect((await h.api('GET', `/api/patients/${gracePatient}`, { token: ada.token })).status).toBe(404);
    expect((await h.api('GET', `/api/patients/${gracePatient}/timeline`, { token: ada.token })).status).toBe(404);
    expect((await h.api('GET', `/api/patients/${gracePatient}/reply-channel`, { token: ada.token })).status).toBe(404);
    expect((await h.api('POST', `/api/patients/${gracePatient}/notes`, { token: ada.token, body: { note: 'x' } })).status).toBe(404);
    expect((await h.api('GET', `/api/patients/00000000-0000-4000-8000-000000000000`, { token: ada.token })).status).toBe(404);
    const adaList = await h.api('GET', '/api/conversations', { token: ada.token });
    expect(adaList.json.conversations.map((c: any) => c.patientId)).toEqual([adaPatient]);

    // A team queue is visible to its members; its supervisor sees members' patients too. Admins manage teams.
    const admin = await h.createCoordinator({ name: 'Root', role: 'admin' });
    expect((await h.api('POST', '/api/admin/teams', { token: ada.token, body: { name: 'Cardiology' } })).status).toBe(403);
    const team = await h.api('POST', '/api/admin/teams', { token: admin.token, body: { name: 'Cardiology' } });
    expect(team.status).toBe(201);
    const teamId = team.json.id;
    const sup = await h.createCoordinator({ name: 'Sue', role: 'supervisor' });
    expect((await h.api('PUT', `/api/admin/teams/${teamId}/members`, { token: admin.token, body: { coordinatorId: ada.id } })).status).toBe(204);
    expect((await h.api('PUT', `/api/admin/teams/${teamId}/members`, { token: admin.token, body: { coordinatorId: sup.id, role: 'supervisor' } })).status).toBe(204);
    expect((await h.api('PUT', `/api/admin/teams/${teamId}/members`, { token: admin.token, body: { coordinatorId: '00000000-0000-4000-8000-000000000000' } })).status).toBe(404);
    expect((await h.api('POST', `/api/patients/${gracePatient}/handoff`, { token: grace.token, body: { toTeamId: teamId, note: 'cardiology question' } })).status).toBe(201);
    expect((await h.api('GET', `/api/patients/${gracePatient}`, { token: grace.token })).status).toBe(404);
    const queue = await h.api('GET', '/api/conversations?filter=team', { token: ada.token });
    expect(queue.json.conversations.map((c: any) => c.patientId)).toEqual([gracePatient]);
    expect((await h.api('GET', `/api/patients/${gracePatient}/timeline`, { token: ada.token })).status).toBe(200);
    const supList = await h.api('GET', '/api/conversations', { token: sup.token });
    expect(supList.json.conversations.map((c: any) => c.patientId).sort()).toEqual([adaPatient, gracePatient].sort());
    expect((await h.api('GET', '/api/supervisor/overview', { token: ada.token })).status).toBe(403);
    const overview = await h.api('GET', '/api/supervisor/overview', { token: sup.token });
    expect(overview.json.teams).toEqual([expect.objectContaining({ teamId, name: 'Cardiology', queued: 1, waiting: 1 })]);
    expect(overview.json.coordinators.map((c: any) => c.name).sort()).toEqual(['Ada', 'Sue']);
    // Leaving the team takes its queue away.
    expect((await h.api('DELETE', `/api/admin/teams/${teamId}/members/${ada.id}`, { token: admin.token })).status).toBe(204);
    expect((await h.api('GET', `/api/patients/${gracePatient}/timeline`, { token: ada.token })).status).toBe(404);
  });

  it('lists conversations oldest-waiting first with unread counts, filters and server-side search', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    const first = await patientOf('+15550000021', 'I need a refill of lisinopril');
    const second = await patientOf('+15550000022', 'appointment on Thursday?');
    await h.sendSms('+15550000021', 'hello again');
    const list = await h.api('GET', '/api/conversations', { token: ada.token });
    expect(list.json.conversations.map((c: any) => [c.patientId, c.unread, c.lastMessage.body])).toEqual([
      [first, 2, 'hello again'],
      [second, 1, 'appointment on Thursday?'],
    ]);
    const timeline = await h.api('GET', `/api/patients/${first}/timeline`, { token: ada.token });
    const lastSeq = timeline.json.items.at(-1).seq;
    expect((await h.api('POST', `/api/patients/${first}/read`, { token: ada.token, body: { seq: lastSeq } })).json.readSeq).toBe(lastSeq);
    const unread = await h.api('GET', '/api/conversations?filter=unread', { token: ada.token });
    expect(unread.json.conversations.map((c: any) => c.patientId)).toEqual([second]);

    await h.api('POST', `/api/patients/${second}/messages`, { token: ada.token, body: { body: 'Yes, Thursday works.' } });
    const waiting = await h.api('GET', '/api/conversations?filter=waiting', { token: ada.token });
    expect(waiting.json.conversations.map((c: any) => c.patientId)).toEqual([first]);

    const byText = await h.api('GET', `/api/conversations?q=${encodeURIComponent('lisinopril')}`, { token: ada.token });
    expect(byText.json.conversations.map((c: any) => c.patientId)).toEqual([first]);
    const byPhone = await h.api('GET', `/api/conversations?q=${encodeURIComponent('555-000-0022')}`, { token: ada.token });
    expect(byPhone.json.conversations.map((c: any) => c.patientId)).toEqual([second]);
    await h.database.db.query(`UPDATE patients SET display_name = 'Maria 100%' WHERE id = $1`, [second]);
    const byName = await h.api('GET', `/api/conversations?q=${encodeURIComponent('maria 100%')}`, { token: ada.token });
    expect(byName.json.conversations.map((c: any) => c.patientId)).toEqual([second]);
    expect((await h.api('GET', `/api/conversations?q=${encodeURIComponent('100_')}`, { token: ada.token })).json.conversations).toEqual([]);
  });

  it('previews the reply channel, keeps private notes in the timeline and audits reads', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    const patientId = await patientOf('+15550000031', 'hi');
    const preview = await h.api('GET', `/api/patients/${patientId}/reply-channel`, { token: ada.token });
    expect(preview.json).toMatchObject({ ok: true, channel: 'sms', address: '+15550000031', reason: 'last used sms' });
    await h.api('POST', `/api/patients/${patientId}/notes`, { token: ada.token, body: { note: 'prefers mornings' } });
    const timeline = await h.api('GET', `/api/patients/${patientId}/timeline`, { token: ada.token });
    expect(timeline.json.items.at(-1)).toMatchObject({ type: 'event', kind: 'note', note: 'prefers mornings', actorId: ada.id });
    expect(h.fake.received).toHaveLength(0);
    const panel = await h.api('GET', `/api/patients/${patientId}`, { token: ada.token });
    expect(panel.json.identities).toEqual([expect.objectContaining({ channel: 'sms', address: '+15550000031' })]);
    expect(panel.json.history).toEqual([expect.objectContaining({ kind: 'routed', detail: expect.objectContaining({ assignment: { kind: 'coordinator', coordinatorId: ada.id } }) })]);
    const audit = await h.database.db.query<{ action: string }>(`SELECT action FROM audit_log WHERE patient_id = $1 ORDER BY id`, [patientId]);
    expect(audit.rows.map((r) => r.action)).toEqual(['reply_channel.read', 'note.create', 'timeline.read', 'patient.read']);
  });

  it('lets admins manage canned responses and everyone read them', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    const admin = await h.createCoordinator({ name: 'Root', role: 'admin' });
    expect((await h.api('POST', '/api/canned-responses', { token: ada.token, body: { shortcut: 'hi', title: 'Hi', body: 'Hello!' } })).status).toBe(403);
    const created = await h.api('POST', '/api/canned-responses', { token: admin.token, body: { shortcut: 'Refill', title: 'Refill', body: 'Your refill is approved.' } });
    expect(created.status).toBe(201);
    expect(created.json.shortcut).toBe('refill');
    expect((await h.api('POST', '/api/canned-responses', { token: admin.token, body: { shortcut: 'refill', title: 'x', body: 'y' } })).status).toBe(409);
    expect((await h.api('POST', '/api/canned-responses', { token: admin.token, body: { shortcut: 'bad shortcut!', title: 'x', body: 'y' } })).status).toBe(400);
    expect((await h.api('PUT', `/api/canned-responses/${created.json.id}`, { token: admin.token, body: { shortcut: 'refill', title: 'Refill', body: 'Approved.' } })).json.body).toBe('Approved.');
    expect((await h.api('GET', '/api/canned-responses', { token: ada.token })).json.cannedResponses).toEqual([expect.objectContaining({ shortcut: 'refill', body: 'Approved.' })]);
    expect((await h.api('DELETE', `/api/canned-responses/${created.json.id}`, { token: admin.token })).status).toBe(204);
  });

  it('bulk-reassigns only patients the supervisor may see', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    const p1 = await patientOf('+15550000041', 'one');
    const p2 = await patientOf('+15550000042', 'two');
    const grace = await h.createCoordinator({ name: 'Grace' });
    const admin = await h.createCoordinator({ name: 'Root', role: 'admin' });
    const result = await h.api('POST', '/api/supervisor/reassign', { token: admin.token, body: { patientIds: [p1, p2], toCoordinatorId: grace.id, note: 'Ada is out today' } });
    expect(result.json.moved).toBe(2);
    expect((await h.api('GET', '/api/conversations', { token: grace.token })).json.conversations).toHaveLength(2);
    expect((await h.api('GET', '/api/conversations', { token: ada.token })).json.conversations).toHaveLength(0);
    expect((await h.api('POST', '/api/supervisor/reassign', { token: ada.token, body: { patientIds: [p1], toCoordinatorId: ada.id, note: 'mine' } })).status).toBe(403);
  });

  it('pushes live events only to coordinators who may see the patient, tells the old owner on handoff, and replays after reconnect', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    const patientId = await patientOf('+15550000051', 'first');
    const grace = await h.createCoordinator({ name: 'Grace' });
    const adaWeb = await webLogin(h, ada.email, ada.password);
    const graceWeb = await webLogin(h, grace.email, grace.password);
    const adaLive = openLive(h, adaWeb);
    const graceLive = openLive(h, graceWeb);
    try {
      await eventually(() => adaLive.events.some((e) => e.event === 'hello') && graceLive.events.some((e) => e.event === 'hello'), { what: 'hello' });
      await h.sendSms('+15550000051', 'second');
      await eventually(() => adaLive.events.find((e) => e.event === 'activity' && e.data.patientId === patientId && e.data.kind === 'message'), { what: 'ada hears the message' });
      const handoff = await web(h, adaWeb, 'POST', `/api/patients/${patientId}/handoff`, { toCoordinatorId: grace.id, note: 'over to you' });
      expect(handoff.status).toBe(201);
      await eventually(() => graceLive.events.find((e) => e.event === 'activity' && e.data.kind === 'handoff'), { what: 'grace hears the handoff' });
      await eventually(() => adaLive.events.find((e) => e.event === 'gone' && e.data.patientId === patientId), { what: 'ada is told the patient left' });
      // Grace only ever heard about her own patient: the first message was Ada's business.
      expect(graceLive.events.filter((e) => e.event === 'activity' && e.data.kind === 'message')).toHaveLength(0);
      const lastSeen = graceLive.events.filter((e) => e.id).at(-1)!.id!;
      await graceLive.close();
      await h.sendSms('+15550000051', 'while grace was away');
      const resumed = openLive(h, graceWeb, lastSeen);
      try {
        await eventually(() => resumed.events.find((e) => e.event === 'activity' && e.data.replayed && e.data.kind === 'message'), { what: 'replayed after reconnect' });
      } finally {
        await resumed.close();
      }
    } finally {
      await adaLive.close();
      await graceLive.close();
    }
  });
});
