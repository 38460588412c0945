import { createServer, type Server } from 'node:http';
import { lookup } from 'node:dns/promises';
import { hostname } from 'node:os';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { backends } from '../test/databases.ts';
import { startFakeAlertReceiver, type FakeAlertReceiver } from '../test/fake-alert-receiver.ts';
import { startHarness, type Harness } from '../test/harness.ts';
import { saveAlertRules } from './alert-rules.ts';
import { isDisallowedAddress, maskUrl } from './alert-target-url.ts';
import { evaluateAlerts } from './alerts.ts';
import { deliverDueNotifications, listTargetHealth } from './notifier.ts';

const logger = pino({ level: 'silent' });
const MIN = 60_000;

const rulesFor = (url: string) => ({
  rules: [{ id: 'patient-wait', kind: 'patient_wait', businessMinutes: 15, wallMinutes: 120, notify: ['t'] }],
  targets: { t: { type: 'slack', url } },
});

/** Alert targets are not a way into our network (SSRF), and their secrets are for admins only. */
describe.each(backends())('alert targets on $name', (backend) => {
  let h: Harness;
  let receiver: FakeAlertReceiver;
  const servers: Server[] = [];
  beforeEach(async () => {
    h = await startHarness(backend); // ALERT_TARGETS_ALLOW_PRIVATE unset
    receiver = await startFakeAlertReceiver();
  });
  afterEach(async () => {
    for (const server of servers.splice(0)) await new Promise((resolve) => server.close(resolve));
    await receiver.close();
    await h.close();
  });

  async function firingNotification(from: string): Promise<void> {
    expect((await h.sendSms(from, 'still waiting')).status).toBe(200);
    const since = (await h.database.db.query<{ waiting_since: Date }>(`SELECT max(waiting_since) AS waiting_since FROM patients`)).rows[0]!.waiting_since;
    await evaluateAlerts(h.database.db, { now: new Date(since.getTime() + 200 * MIN) });
  }

  async function lastError(): Promise<string | null> {
    return (await h.database.db.query<{ last_error: string | null }>(`SELECT last_error FROM alert_notifications ORDER BY created_at DESC LIMIT 1`)).rows[0]?.last_error ?? null;
  }

  it('refuses loopback, private, link-local and metadata addresses at save time with a 400, storing nothing', async () => {
    const admin = await h.createCoordinator({ name: 'Root', role: 'admin' });
    for (const url of [
      `${receiver.url}/services/T000/B000/XXX`,
      'http://localhost:8080/hook',
      'http://[::1]/hook',
      'http://[::ffff:127.0.0.1]/hook',
      'http://10.1.2.3/hook',
      'http://172.20.0.1/hook',
      'http://192.168.1.1/hook',
      'http://100.64.0.1/hook',
      'http://169.254.169.254/latest/meta-data/',
      'http://[fd00:ec2::254]/latest',
      'http://[fe80::1]/hook',
      'http://0.0.0.0:80/hook',
    ]) {
      const saved = await h.api('PUT', '/api/ops/alert-rules', { token: admin.token, body: rulesFor(url) });
      expect(saved.status, url).toBe(400);
      expect(saved.json.details, url).toEqual([{ path: 'targets.t.url', message: expect.stringMatching(/must be public/) }]);
    }
    expect((await h.database.db.query(`SELECT 1 FROM alert_rule_versions`)).rowCount).toBe(0);
    expect((await h.api('PUT', '/api/ops/alert-rules', { token: admin.token, body: rulesFor('https://hooks.slack.com/services/T000/B000/XXX') })).status).toBe(201);
  });

  it('refuses at send time a name that resolves to a private address, and never follows a redirect', async () => {
    // Saved while private targets were allowed (or under a name that resolved elsewhere then): checked again on sending.
    const localName = hostname();
    const resolved = await lookup(localName).catch(() => null);
    const redirector = createServer((_request, response) => response.writeHead(307, { location: `${receiver.url}/redirected` }).end());
    servers.push(redirector);
    await new Promise<void>((resolve) => redirector.listen(0, '127.0.0.1', resolve));
    const redirectUrl = `http://127.0.0.1:${(redirector.address() as { port: number }).port}/hook`;

    if (resolved && isDisallowedAddress(resolved.address)) {
      const port = new URL(receiver.url).port;
      expect((await saveAlertRules(h.database.db, rulesFor(`http://${localName}:${port}/services/T000/B000/SECRET`), null)).ok).toBe(true);
      await firingNotification('+15550000101');
      await deliverDueNotifications({ db: h.database.db, logger });
      expect(receiver.received).toHaveLength(0);
      expect(await lastError()).toMatch(/resolves to .*not a public address/);
    }

    // The redirect test needs a loopback target, so private targets are allowed here: the redirect is still refused.
    expect((await saveAlertRules(h.database.db, rulesFor(redirectUrl), null, { allowPrivateTargets: true })).ok).toBe(true);
    await firingNotification('+15550000102');
    await deliverDueNotifications({ db: h.database.db, logger, allowPrivateTargets: true });
    expect(receiver.received).toHaveLength(0);
    expect(await lastError()).toMatch(/answered 307 \(redirects are not followed\)/);
  });

  it('shows supervisors target URLs and delivery errors without their secret path; admins see them whole', async () => {
    const admin = await h.createCoordinator({ name: 'Root', role: 'admin' });
    const supervisor = await h.createCoordinator({ name: 'Sup', role: 'supervisor' });
    receiver.failWith(500);
    const secretUrl = `${receiver.url}/services/T000/B000/XXXSECRET?token=abc`;
    expect((await saveAlertRules(h.database.db, rulesFor(secretUrl), null, { allowPrivateTargets: true })).ok).toBe(true);
    await firingNotification('+15550000103');
    await deliverDueNotifications({ db: h.database.db, logger, allowPrivateTargets: true });

    const asSupervisor = await h.api('GET', '/api/ops/alert-rules', { token: supervisor.token });
    expect(asSupervisor.json.active.document.targets.t.url).toBe(`${receiver.url}/services/T000/…`);
    const targetsForSupervisor = await h.api('GET', '/api/ops/alert-targets', { token: supervisor.token });
    expect(targetsForSupervisor.text).not.toContain('XXXSECRET');
    expect(targetsForSupervisor.json.targets[0].lastError).toContain(`${receiver.url}/services/T000/…`);
    const validated = await h.api('POST', '/api/ops/alert-rules/validate', { token: supervisor.token, body: rulesFor('https://hooks.slack.com/services/T1/B2/SECRET') });
    expect(validated.json.document.targets.t.url).toBe('https://hooks.slack.com/services/T1/…');

    const asAdmin = await h.api('GET', '/api/ops/alert-rules', { token: admin.token });
    expect(asAdmin.json.active.document.targets.t.url).toBe(secretUrl);
    expect((await listTargetHealth(h.database.db))[0]!.lastError).toContain('answered 500');
  });
});

describe('maskUrl', () => {
  it.each([
    ['https://hooks.slack.com/services/T000/B000/XXXX', 'https://hooks.slack.com/services/T000/…'],
    ['https://example.org/hook/s3cr3t', 'https://example.org/hook/…'],
    ['https://example.org/s3cr3t', 'https://example.org/…'],
    ['https://user:pw@example.org:8443/', 'https://example.org:8443/'],
    ['https://example.org/?key=s3cr3t', 'https://example.org/…'],
  ])('%s → %s', (url, masked) => {
    expect(maskUrl(url)).toBe(masked);
  });
});
