import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { backends } from '../test/databases.ts';
import { startHarness, type Harness } from '../test/harness.ts';

describe.each(backends())('coordinator API on $name', (backend) => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness(backend);
  });
  afterEach(async () => {
    await h.close();
  });

  async function patientOf(token: string): Promise<string> {
    const inbox = await h.api('GET', '/api/inbox', { token });
    return inbox.json.patients[0].patientId;
  }

  it('logs in, rejects wrong passwords and unknown emails alike, and revokes on logout', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    const wrong = await h.api('POST', '/api/auth/login', { body: { email: ada.email, password: 'not-it' } });
    const unknown = await h.api('POST', '/api/auth/login', { body: { email: 'nobody@test.switchboard', password: 'whatever' } });
    expect([wrong.status, unknown.status]).toEqual([401, 401]);
    expect(wrong.json).toEqual(unknown.json);
    const stored = await h.database.db.query<{ password_hash: string }>(`SELECT password_hash FROM coordinators WHERE id = $1`, [ada.id]);
    expect(stored.rows[0]!.password_hash).toMatch(/^scrypt\$32768\$8\$1\$/);

    expect((await h.api('GET', '/api/me', { token: ada.token })).json).toMatchObject({ id: ada.id });
    expect((await h.api('POST', '/api/auth/logout', { token: ada.token })).status).toBe(204);
    expect((await h.api('GET', '/api/me', { token: ada.token })).status).toBe(401);
  });

  it('answers 401 without or with a bad token, in JSON with a stable code', async () => {
    for (const token of [undefined, 'nope']) {
      const response = await h.api('GET', '/api/inbox', { token });
      expect(response.status).toBe(401);
      expect(response.json).toMatchObject({ code: 'unauthorized', message: expect.any(String) });
    }
  });

  it('hides patients of other coordinators behind 404, like patients that do not exist', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    await h.sendSms('+15550000001', 'hello');
    const grace = await h.createCoordinator({ name: 'Grace' });
    const patientId = await patientOf(ada.token);
    for (const path of [`/api/patients/${patientId}/timeline`, '/api/patients/00000000-0000-4000-8000-000000000000/timeline', '/api/patients/not-a-uuid/timeline']) {
      const response = await h.api('GET', path, { token: grace.token });
      expect(response.status).toBe(404);
      expect(response.json).toMatchObject({ code: 'not_found' });
    }
    const send = await h.api('POST', `/api/patients/${patientId}/messages`, { token: grace.token, body: { body: 'sneaky' } });
    expect(send.status).toBe(404);
    const admin = await h.createCoordinator({ name: 'Root', role: 'admin' });
    expect((await h.api('GET', `/api/patients/${patientId}/timeline`, { token: admin.token })).status).toBe(200);
  });

  it('validates input: every problem listed, nothing written', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    await h.sendSms('+15550000002', 'hello');
    const patientId = await patientOf(ada.token);
    const empty = await h.api('POST', `/api/patients/${patientId}/messages`, { token: ada.token, body: { body: '   ', idempotencyKey: '' } });
    expect(empty.status).toBe(400);
    expect(empty.json.code).toBe('invalid_input');
    expect(empty.json.details.map((d: { path: string }) => d.path).sort()).toEqual(['body', 'idempotencyKey']);
    const malformed = await h.api('POST', `/api/patients/${patientId}/messages`, { token: ada.token, rawBody: '{"body":', contentType: 'application/json' });
    expect(malformed.status).toBe(400);
    expect(malformed.json.code).toBe('bad_request');
    const huge = await h.api('POST', `/api/patients/${patientId}/messages`, { token: ada.token, body: { body: 'x'.repeat(400 * 1024) } });
    expect(huge.status).toBe(413);
    const outbound = await h.database.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM messages WHERE direction = 'outbound'`);
    expect(outbound.rows[0]!.n).toBe(0);
  });

  it('a repeated idempotency key returns the first message and writes one', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    await h.sendSms('+15550000003', 'hello');
    const patientId = await patientOf(ada.token);
    const send = () => h.api('POST', `/api/patients/${patientId}/messages`, { token: ada.token, body: { body: 'once only', idempotencyKey: 'key-1' } });
    const results = await Promise.all([send(), send(), send()]);
    expect(results.map((r) => r.status).sort()).toEqual([200, 200, 201]);
    expect(new Set(results.map((r) => r.json.messageId)).size).toBe(1);
    const outbox = await h.database.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM outbox`);
    expect(outbox.rows[0]!.n).toBe(1);
  });

  it('a patient with no channel cannot be replied to: 409 with the reason', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    const patient = await h.database.db.query<{ id: string }>(`INSERT INTO patients DEFAULT VALUES RETURNING id`);
    const patientId = patient.rows[0]!.id;
    await h.database.db.query(`INSERT INTO assignments (patient_id, coordinator_id) VALUES ($1, $2)`, [patientId, ada.id]);
    const response = await h.api('POST', `/api/patients/${patientId}/messages`, { token: ada.token, body: { body: 'hello?' } });
    expect(response.status).toBe(409);
    expect(response.json).toMatchObject({ code: 'no_channel', message: expect.stringContaining('no channel identity') });
  });

  it('assigns new patients to the least-loaded coordinator', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    const grace = await h.createCoordinator({ name: 'Grace' });
    for (const n of [1, 2, 3, 4]) await h.sendSms(`+1555000010${n}`, 'hi');
    const counts = await Promise.all([ada, grace].map(async (c) => (await h.api('GET', '/api/inbox', { token: c.token })).json.patients.length));
    expect(counts).toEqual([2, 2]);
  });

  it('hands a patient off with a note: inboxes move, the timeline records who, when and why, the wait clock carries over', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    await h.sendSms('+15550000004', 'I need help with my insurance');
    const grace = await h.createCoordinator({ name: 'Grace' });
    const patientId = await patientOf(ada.token);
    const waitingBefore = (await h.api('GET', '/api/inbox', { token: ada.token })).json.patients[0].waitingSince;

    const badTarget = await h.api('POST', `/api/patients/${patientId}/handoff`, { token: ada.token, body: { toCoordinatorId: '00000000-0000-4000-8000-000000000000', note: 'x' } });
    expect(badTarget.status).toBe(400);
    const noNote = await h.api('POST', `/api/patients/${patientId}/handoff`, { token: ada.token, body: { toCoordinatorId: grace.id, note: '' } });
    expect(noNote.status).toBe(400);

    const handoff = await h.api('POST', `/api/patients/${patientId}/handoff`, { token: ada.token, body: { toCoordinatorId: grace.id, note: 'Grace knows the insurance rules' } });
    expect(handoff.status).toBe(201);
    expect((await h.api('GET', '/api/inbox', { token: ada.token })).json.patients).toHaveLength(0);
    const graceInbox = (await h.api('GET', '/api/inbox', { token: grace.token })).json.patients;
    expect(graceInbox).toHaveLength(1);
    expect(graceInbox[0].waitingSince).toBe(waitingBefore);
    expect((await h.api('GET', `/api/patients/${patientId}/timeline`, { token: ada.token })).status).toBe(404);

    const items = (await h.api('GET', `/api/patients/${patientId}/timeline`, { token: grace.token })).json.items;
    expect(items.map((i: any) => (i.type === 'event' ? i.kind : i.direction))).toEqual(['inbound', 'routed', 'handoff']);
    expect(items[2]).toMatchObject({ actorId: ada.id, fromCoordinatorId: ada.id, toCoordinatorId: grace.id, note: 'Grace knows the insurance rules' });
    const again = await h.api('POST', `/api/patients/${patientId}/handoff`, { token: grace.token, body: { toCoordinatorId: grace.id, note: 'mine' } });
    expect(again.status).toBe(409);
  });

  it('pages the timeline from newest to oldest', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    for (let i = 0; i < 7; i++) await h.sendSms('+15550000005', `message ${i}`);
    const patientId = await patientOf(ada.token);
    const seen: string[] = [];
    let before: number | null = null;
    do {
      const query: string = before ? `?limit=3&before=${before}` : '?limit=3';
      const page: any = (await h.api('GET', `/api/patients/${patientId}/timeline${query}`, { token: ada.token })).json;
      seen.unshift(...page.items.map((i: any) => i.body ?? i.kind));
      before = page.nextBefore;
    } while (before !== null);
    // Every inbound message is followed by its routing decision.
    expect(seen).toEqual(['message 0', 'routed', 'message 1', 'routed', 'message 2', 'routed', 'message 3', 'routed', 'message 4', 'routed', 'message 5', 'routed', 'message 6', 'routed']);
  });

  it('audits every look at and change to patient data, and only admins may read the audit', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    await h.sendSms('+15550000006', 'hello');
    const patientId = await patientOf(ada.token);
    await h.api('GET', `/api/patients/${patientId}/timeline`, { token: ada.token });
    await h.api('POST', `/api/patients/${patientId}/messages`, { token: ada.token, body: { body: 'reply' } });
    expect((await h.api('GET', '/api/admin/audit', { token: ada.token })).status).toBe(403);
    const admin = await h.createCoordinator({ name: 'Root', role: 'admin' });
    const audit = await h.api('GET', `/api/admin/audit?patientId=${patientId}`, { token: admin.token });
    expect(audit.status).toBe(200);
    // Reading the audit for a patient is itself an access to that patient's record, so it is audited too.
    const entries = audit.json.entries.map((e: any) => [e.action, e.actor_id]).sort();
    expect(entries).toEqual([['audit.read', admin.id], ['message.send', ada.id], ['timeline.read', ada.id]].sort());
    expect(audit.json.entries.every((e: any) => e.ip === '127.0.0.1')).toBe(true);
  });

  it('health reports the storage in use', async () => {
    const health = await h.api('GET', '/api/health');
    expect(health).toMatchObject({ status: 200, json: { status: 'ok', storage: backend.name } });
  });
});
