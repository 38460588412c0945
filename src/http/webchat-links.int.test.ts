import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { backends } from '../test/databases.ts';
import { eventually, startHarness, type Harness } from '../test/harness.ts';

/** A web chat stream read with fetch: its status, the messages it carried, and whether the server ended it. */
function openStream(baseUrl: string, token: string) {
  const state = { status: 0, ended: false, bodies: [] as string[] };
  const controller = new AbortController();
  const done = (async () => {
    const response = await fetch(`${baseUrl}/chat/api/stream`, { headers: { authorization: `Bearer ${token}` }, signal: controller.signal });
    state.status = response.status;
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      for (const line of value.split('\n')) if (line.startsWith('data: ')) state.bodies.push(JSON.parse(line.slice(6)).body);
    }
    state.ended = true;
  })().catch(() => {});
  return { state, close: async () => (controller.abort(), await done) };
}

const tokenOf = (url: string) => new URL(url).hash.slice(1);

describe.each(backends())('web chat links are stored, revocable and short-lived ($name)', (backend) => {
  let h: Harness;
  const streams: Array<{ close(): Promise<unknown> }> = [];
  beforeEach(async () => {
    h = await startHarness(backend, { webchat: true });
  });
  afterEach(async () => {
    for (const stream of streams.splice(0)) await stream.close();
    await h.close();
  });

  async function patientOfAda(phones: string[]) {
    const ada = await h.createCoordinator({ name: 'Ada' });
    for (const phone of phones) expect((await h.sendSms(phone, `hello from ${phone}`)).status).toBe(200);
    const inbox = await h.api('GET', '/api/inbox', { token: ada.token });
    return { ada, patientIds: (inbox.json.patients as Array<{ patientId: string }>).map((p) => p.patientId) };
  }
  const makeLink = async (patientId: string, token: string, body: unknown = {}) => {
    const made = await h.api('POST', `/api/patients/${patientId}/webchat-link`, { token, body });
    expect(made.status).toBe(201);
    return { linkId: made.json.linkId as string, token: tokenOf(made.json.url), expiresAt: made.json.expiresAt as string };
  };
  const say = (token: string, clientMessageId: string) => h.api('POST', '/chat/api/messages', { token, body: { clientMessageId, body: 'hi' } });
  const stream = (token: string) => {
    const s = openStream(h.baseUrl, token);
    streams.push(s);
    return s.state;
  };
  const refused = async (token: string, code: string) => {
    const message = await say(token, 'refused-0001');
    expect([message.status, message.json.code]).toEqual([403, code]);
    const s = stream(token);
    await eventually(() => s.status === 403, { what: `stream refused with ${code}` });
  };

  it('a coordinator revokes a link: messages and new streams are refused and the open stream ends', async () => {
    const { ada, patientIds } = await patientOfAda(['+15550007001']);
    const patientId = patientIds[0]!;
    const link = await makeLink(patientId, ada.token);
    const other = await makeLink(patientId, ada.token);
    // Only its hash is stored.
    expect((await h.database.db.query(`SELECT 1 FROM webchat_links WHERE token_hash = $1`, [link.token])).rowCount).toBe(0);
    expect((await say(link.token, 'before-0001')).status).toBe(201);
    const open = stream(link.token);
    await eventually(() => open.bodies.length === 1, { what: 'stream open' });

    const outsider = await h.createCoordinator({ name: 'Grace' });
    expect((await h.api('DELETE', `/api/patients/${patientId}/webchat-links/${link.linkId}`, { token: outsider.token })).status).toBe(404);
    const revoked = await h.api('DELETE', `/api/patients/${patientId}/webchat-links/${link.linkId}`, { token: ada.token });
    expect(revoked.json).toEqual({ revoked: 1 });
    await eventually(() => open.ended, { what: 'the open stream to end' });
    await refused(link.token, 'link_revoked');
    // The patient's other link is untouched; revoking all takes it too.
    expect((await say(other.token, 'other-0001')).status).toBe(201);
    expect((await h.api('DELETE', `/api/patients/${patientId}/webchat-links`, { token: ada.token })).json).toEqual({ revoked: 1 });
    await refused(other.token, 'link_revoked');
    const listed = await h.api('GET', `/api/patients/${patientId}/webchat-links`, { token: ada.token });
    expect(listed.json.links.map((l: any) => l.revokedReason)).toEqual(['revoked', 'revoked']);
    const audit = await h.database.db.query(`SELECT 1 FROM audit_log WHERE action = 'webchat.link_revoked' AND actor_id = $1`, [ada.id]);
    expect(audit.rowCount).toBe(2);
  });

  it('a handoff to someone else revokes the links its previous coordinator made, and ends their streams', async () => {
    const { ada, patientIds } = await patientOfAda(['+15550007002']);
    const patientId = patientIds[0]!;
    const link = await makeLink(patientId, ada.token);
    const open = stream(link.token);
    await eventually(() => open.status === 200, { what: 'stream open' });
    const grace = await h.createCoordinator({ name: 'Grace' });
    const handoff = await h.api('POST', `/api/patients/${patientId}/handoff`, { token: ada.token, body: { toCoordinatorId: grace.id, note: 'over to you' } });
    expect(handoff.status).toBe(201);
    await eventually(() => open.ended, { what: 'the stream to end on handoff' });
    await refused(link.token, 'link_revoked');
    // Grace's own link works.
    const graceLink = await makeLink(patientId, grace.token);
    expect((await say(graceLink.token, 'grace-0001')).status).toBe(201);
  });

  it('a merge revokes both patients’ links', async () => {
    const { ada, patientIds } = await patientOfAda(['+15550007003', '+15550007004']);
    const [survivor, absorbed] = patientIds as [string, string];
    const survivorLink = await makeLink(survivor, ada.token);
    const absorbedLink = await makeLink(absorbed, ada.token);
    const merged = await h.api('POST', `/api/patients/${survivor}/merge`, { token: ada.token, body: { patientId: absorbed } });
    expect(merged.status).toBeLessThan(300);
    await refused(survivorLink.token, 'link_revoked');
    await refused(absorbedLink.token, 'link_revoked');
    // (The absorbed patient's assignment is dropped within the merge, which revokes its link first.)
    const reasons = await h.database.db.query<{ patient_id: string; revoked_reason: string }>(`SELECT patient_id, revoked_reason FROM webchat_links`);
    expect(Object.fromEntries(reasons.rows.map((r) => [r.patient_id, r.revoked_reason]))).toEqual({ [survivor]: 'merged', [absorbed]: expect.stringMatching(/^(merged|reassigned)$/) });
  });

  it('links last at most a week, expired ones are refused, and a valid one renews into a fresh one', async () => {
    const { ada, patientIds } = await patientOfAda(['+15550007005']);
    const patientId = patientIds[0]!;
    expect((await h.api('POST', `/api/patients/${patientId}/webchat-link`, { token: ada.token, body: { ttlHours: 24 * 30 } })).status).toBe(400);
    const link = await makeLink(patientId, ada.token);
    const renewed = await h.api('POST', '/chat/api/renew', { token: link.token });
    expect(renewed.status).toBe(200);
    expect(new Date(renewed.json.expiresAt).getTime()).toBeGreaterThan(Date.now());
    expect((await say(renewed.json.token, 'renewed-0001')).status).toBe(201);
    // The exchanged link stops working, and cannot be renewed again.
    await refused(link.token, 'link_revoked');
    expect((await h.api('POST', '/chat/api/renew', { token: link.token })).status).toBe(403);

    await h.database.db.query(`UPDATE webchat_links SET expires_at = now() - interval '1 second'`);
    await refused(renewed.json.token, 'link_expired');
    expect((await h.api('POST', '/chat/api/renew', { token: renewed.json.token })).status).toBe(403);
  });
});
