import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createPostgresDb } from '../db/db.ts';
import { startWeb } from '../services/web.ts';
import { backends } from '../test/databases.ts';
import { eventually, freePort, startHarness, type Harness } from '../test/harness.ts';

/** An open /api/live stream: the events it got, and whether the server ended it. */
function openLive(baseUrl: string, headers: Record<string, string>) {
  const state = { events: [] as string[], ended: false, status: 0 };
  const controller = new AbortController();
  const done = (async () => {
    const response = await fetch(`${baseUrl}/api/live`, { headers, signal: controller.signal });
    state.status = response.status;
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      for (const line of value.split('\n')) if (line.startsWith('event: ')) state.events.push(line.slice(7));
    }
    state.ended = true;
  })().catch(() => {});
  return {
    state,
    async close() {
      controller.abort();
      await done;
    },
  };
}

async function webLogin(baseUrl: string, email: string, password: string) {
  const response = await fetch(`${baseUrl}/api/session/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, password }) });
  expect(response.status).toBe(200);
  const json = (await response.json()) as { csrfToken: string };
  return { cookie: response.headers.get('set-cookie')!.split(';')[0]!, csrf: json.csrfToken };
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const login = (h: Harness, email: string, password: string) => h.api('POST', '/api/auth/login', { body: { email, password } });

describe.each(backends())('accounts and revocation ($name)', (backend) => {
  let h: Harness;
  const streams: Array<{ close(): Promise<void> }> = [];
  afterEach(async () => {
    for (const stream of streams.splice(0)) await stream.close();
    await h?.close();
  });
  const live = (baseUrl: string, headers: Record<string, string>) => {
    const stream = openLive(baseUrl, headers);
    streams.push(stream);
    return stream.state;
  };

  it('logout ends the caller’s open live stream, bearer and cookie, and leaves others open', async () => {
    h = await startHarness(backend);
    const ada = await h.createCoordinator({ name: 'Ada' });
    const second = (await login(h, ada.email, ada.password)).json.token as string;
    const byToken = live(h.baseUrl, bearer(ada.token));
    const byOtherToken = live(h.baseUrl, bearer(second));
    const session = await webLogin(h.baseUrl, ada.email, ada.password);
    const byCookie = live(h.baseUrl, { cookie: session.cookie });
    await eventually(() => byToken.events.includes('hello') && byOtherToken.events.includes('hello') && byCookie.events.includes('hello'), { what: 'streams open' });

    // The bearer-token logout called with only a browser session: a clear 400 that names the right route (was a 500).
    const cookieOnly = await fetch(`${h.baseUrl}/api/auth/logout`, { method: 'POST', headers: { cookie: session.cookie, 'x-csrf-token': session.csrf } });
    expect(cookieOnly.status).toBe(400);
    expect(await cookieOnly.json()).toMatchObject({ code: 'no_bearer_token' });
    expect(byCookie.ended).toBe(false);
    expect((await h.api('POST', '/api/auth/logout', { token: ada.token })).status).toBe(204);
    await eventually(() => byToken.ended, { what: 'the logged-out token’s stream to end' });
    const logout = await fetch(`${h.baseUrl}/api/session/logout`, { method: 'POST', headers: { cookie: session.cookie, 'x-csrf-token': session.csrf } });
    expect(logout.status).toBe(204);
    await eventually(() => byCookie.ended, { what: 'the logged-out session’s stream to end' });
    expect(byOtherToken.ended).toBe(false);
    // Reconnecting with the revoked credential is refused.
    const again = live(h.baseUrl, bearer(ada.token));
    await eventually(() => again.status === 401, { what: '401 on reconnect' });
  });

  it('re-checks credentials on the heartbeat, so a revocation without a notification still ends the stream', async () => {
    h = await startHarness(backend, { app: { liveHeartbeatMs: 50 } });
    const ada = await h.createCoordinator({ name: 'Ada' });
    const stream = live(h.baseUrl, bearer(ada.token));
    await eventually(() => stream.events.includes('hello'), { what: 'stream open' });
    await h.database.db.query(`UPDATE api_tokens SET revoked_at = now() WHERE coordinator_id = $1`, [ada.id]);
    await eventually(() => stream.ended, { what: 'the stream to end' });
  });

  it('an admin disables an account: tokens and sessions stop working, streams end, sign-in is refused; re-enabling lets it sign in', async () => {
    h = await startHarness(backend);
    const admin = await h.createCoordinator({ name: 'Root', role: 'admin' });
    const ada = await h.createCoordinator({ name: 'Ada' });
    const session = await webLogin(h.baseUrl, ada.email, ada.password);
    const stream = live(h.baseUrl, bearer(ada.token));
    await eventually(() => stream.events.includes('hello'), { what: 'stream open' });

    expect((await h.api('POST', `/api/admin/coordinators/${ada.id}/disable`, { token: ada.token })).status).toBe(403);
    expect((await h.api('POST', `/api/admin/coordinators/00000000-0000-4000-8000-000000000000/disable`, { token: admin.token })).status).toBe(404);
    const disabled = await h.api('POST', `/api/admin/coordinators/${ada.id}/disable`, { token: admin.token });
    expect(disabled.status).toBe(200);
    expect(disabled.json.revoked).toBeGreaterThanOrEqual(2);
    await eventually(() => stream.ended, { what: 'the disabled account’s stream to end' });
    expect((await h.api('GET', '/api/me', { token: ada.token })).status).toBe(401);
    expect((await fetch(`${h.baseUrl}/api/session`, { headers: { cookie: session.cookie } })).status).toBe(401);
    const refused = await login(h, ada.email, ada.password);
    expect(refused.status).toBe(403);
    expect(refused.json.code).toBe('account_disabled');
    expect((await h.api('POST', '/api/session/login', { body: { email: ada.email, password: ada.password } })).status).toBe(403);
    // A wrong password is still just wrong: the disabled state is told only to someone who knows the password.
    expect((await login(h, ada.email, 'not the password')).status).toBe(401);
    expect((await h.api('GET', '/api/coordinators', { token: admin.token })).json.coordinators.find((c: any) => c.id === ada.id).disabled).toBe(true);

    expect((await h.api('POST', `/api/admin/coordinators/${ada.id}/enable`, { token: admin.token })).status).toBe(200);
    const back = await login(h, ada.email, ada.password);
    expect(back.status).toBe(200);
    expect((await h.api('GET', '/api/me', { token: back.json.token })).status).toBe(200);
    // The old token stays revoked.
    expect((await h.api('GET', '/api/me', { token: ada.token })).status).toBe(401);
    const audit = await h.database.db.query<{ action: string }>(`SELECT action FROM audit_log WHERE action IN ('coordinator.disable', 'coordinator.enable', 'auth.login_disabled') ORDER BY id`);
    expect(audit.rows.map((r) => r.action)).toEqual(['coordinator.disable', 'auth.login_disabled', 'auth.login_disabled', 'coordinator.enable']);
  });

  it('an admin resets a password: the old one and old tokens stop working, the new one signs in', async () => {
    h = await startHarness(backend);
    const admin = await h.createCoordinator({ name: 'Root', role: 'admin' });
    const ada = await h.createCoordinator({ name: 'Ada' });
    const stream = live(h.baseUrl, bearer(ada.token));
    await eventually(() => stream.events.includes('hello'), { what: 'stream open' });
    expect((await h.api('POST', `/api/admin/coordinators/${ada.id}/password`, { token: admin.token, body: { password: 'short' } })).status).toBe(400);
    expect((await h.api('GET', '/api/me', { token: ada.token })).status).toBe(200);
    const reset = await h.api('POST', `/api/admin/coordinators/${ada.id}/password`, { token: admin.token, body: { password: 'a brand new passphrase' } });
    expect(reset.status).toBe(200);
    await eventually(() => stream.ended, { what: 'the stream to end' });
    expect((await h.api('GET', '/api/me', { token: ada.token })).status).toBe(401);
    expect((await login(h, ada.email, ada.password)).status).toBe(401);
    expect((await login(h, ada.email, 'a brand new passphrase')).status).toBe(200);
    const audit = await h.database.db.query(`SELECT 1 FROM audit_log WHERE action = 'coordinator.password_reset' AND actor_id = $1`, [admin.id]);
    expect(audit.rowCount).toBe(1);
  });

  it.runIf(backend.name === 'postgres')('logout on one web process ends the caller’s stream on another', async () => {
    h = await startHarness(backend);
    const ada = await h.createCoordinator({ name: 'Ada' });
    const otherDb = createPostgresDb({ connectionString: h.database.url! });
    const other = await startWeb({ db: otherDb, logger: pino({ level: 'silent' }), adapters: h.adapters, publicBaseUrl: h.baseUrl, tokenTtlMs: 3_600_000, host: '127.0.0.1', port: await freePort() });
    try {
      const stream = live(other.url, bearer(ada.token));
      await eventually(() => stream.events.includes('hello'), { what: 'stream open on the other process' });
      expect((await h.api('POST', '/api/auth/logout', { token: ada.token })).status).toBe(204);
      await eventually(() => stream.ended, { what: 'the other process to end the stream' });
    } finally {
      for (const stream of streams.splice(0)) await stream.close();
      await other.stop();
      await otherDb.close();
    }
  });
});
