import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { backends } from '../test/databases.ts';
import { startHarness, type Harness } from '../test/harness.ts';

const actions = async (h: Harness, action: string) =>
  (await h.database.db.query<{ ip: string; detail: any }>(`SELECT ip, detail FROM audit_log WHERE action = $1 ORDER BY id`, [action])).rows;

describe.each(backends())('sign-in throttling ($name)', (backend) => {
  let h: Harness;
  afterEach(async () => {
    await h?.close();
  });

  describe('without trusted proxies', () => {
    beforeEach(async () => {
      h = await startHarness(backend);
    });

    it('evaluates exactly the account limit of 40 parallel wrong passwords, and another account signs in from the same IP', async () => {
      const ada = await h.createCoordinator({ name: 'Ada' });
      const grace = await h.createCoordinator({ name: 'Grace' });
      const attempts = await Promise.all(
        Array.from({ length: 40 }, (_, i) => h.api('POST', i % 2 ? '/api/session/login' : '/api/auth/login', { body: { email: ada.email, password: `wrong password ${i}` } })),
      );
      const statuses = attempts.map((a) => a.status).sort();
      expect(statuses.filter((s) => s === 401)).toHaveLength(5);
      expect(statuses.filter((s) => s === 429)).toHaveLength(35);
      // Only admitted attempts had their password evaluated (and failed); the rest were refused before hashing.
      expect(await actions(h, 'auth.login_failed')).toHaveLength(5);
      expect(await actions(h, 'auth.login_locked')).toHaveLength(35);
      // The attacked account stays locked, even for its own password…
      expect((await h.api('POST', '/api/auth/login', { body: { email: ada.email, password: ada.password } })).status).toBe(429);
      // …but a different account's correct password from the same IP signs in, on both routes.
      expect((await h.api('POST', '/api/auth/login', { body: { email: grace.email, password: grace.password } })).status).toBe(200);
      expect((await h.api('POST', '/api/session/login', { body: { email: grace.email, password: grace.password } })).status).toBe(200);
      // The window passing unlocks the account.
      await h.database.db.query(`UPDATE login_attempts SET window_start = now() - interval '16 minutes'`);
      expect((await h.api('POST', '/api/auth/login', { body: { email: ada.email, password: ada.password } })).status).toBe(200);
    });

    it('ignores X-Forwarded-For from a peer that is not a trusted proxy', async () => {
      const ada = await h.createCoordinator({ name: 'Ada' });
      await fetch(`${h.baseUrl}/api/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-forwarded-for': '203.0.113.9' },
        body: JSON.stringify({ email: ada.email, password: 'wrong password' }),
      });
      expect((await actions(h, 'auth.login_failed')).map((row) => row.ip)).toEqual(['127.0.0.1']);
      const ipRows = await h.database.db.query<{ key: string }>(`SELECT key FROM login_attempts WHERE key LIKE 'ip:%'`);
      expect(ipRows.rows.map((row) => row.key)).toEqual(['ip:127.0.0.1']);
    });
  });

  describe('behind a trusted proxy', () => {
    beforeEach(async () => {
      h = await startHarness(backend, { app: { trustedProxies: ['127.0.0.0/8'] } });
    });

    it('takes the client from X-Forwarded-For, so clients behind the proxy do not share a bucket', async () => {
      const ada = await h.createCoordinator({ name: 'Ada' });
      const login = (xff: string, password: string) =>
        fetch(`${h.baseUrl}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-forwarded-for': xff }, body: JSON.stringify({ email: ada.email, password }) });
      // A client cannot hide behind a forged hop: the last untrusted address is the client.
      await login('198.51.100.1, 203.0.113.9', 'wrong password');
      expect((await actions(h, 'auth.login_failed')).map((row) => row.ip)).toEqual(['203.0.113.9']);
      expect((await login('198.51.100.7', ada.password)).status).toBe(200);
      expect((await actions(h, 'auth.login')).at(-1)?.ip).toBe('198.51.100.7');
    });
  });
});
