import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPostgresAvailable, postgresBackend } from '../test/databases.ts';
import { startFakeAlertReceiver, type FakeAlertReceiver } from '../test/fake-alert-receiver.ts';
import { startFakeSmtp, type FakeSmtp } from '../test/fake-smtp.ts';
import { eventually, startHarness, TEST_TWILIO, type Harness } from '../test/harness.ts';
import { saveAlertRules } from './alert-rules.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

describe.skipIf(!isPostgresAvailable())('alerts from two worker processes on one PostgreSQL', () => {
  let h: Harness;
  let slack: FakeAlertReceiver;
  let mail: FakeSmtp;
  const workers = new Set<ChildProcess>();

  beforeAll(async () => {
    h = await startHarness(postgresBackend);
    slack = await startFakeAlertReceiver();
    mail = await startFakeSmtp({ user: 'relay', pass: 'relay-secret' });
  });
  afterAll(async () => {
    for (const worker of workers) worker.kill('SIGKILL');
    await slack?.close();
    await mail?.close();
    await h?.close();
  });

  function startWorker(): ChildProcess {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', '--role', 'worker'], {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'inherit'],
      env: {
        PATH: process.env.PATH,
        DATABASE_URL: h.database.url,
        DATABASE_POOL_SIZE: '4',
        TWILIO_ACCOUNT_SID: TEST_TWILIO.accountSid,
        TWILIO_AUTH_TOKEN: TEST_TWILIO.authToken,
        TWILIO_FROM_NUMBER: TEST_TWILIO.fromNumber,
        TWILIO_API_BASE: h.fake.url,
        PUBLIC_BASE_URL: h.baseUrl,
        ALERTS_INTERVAL_MS: '100',
        ALERT_TARGETS_ALLOW_PRIVATE: '1',
        // Alert email goes through the email channel's own SMTP settings: one mail server, configured once.
        SMTP_HOST: mail.host,
        SMTP_PORT: String(mail.port),
        SMTP_USER: 'relay',
        SMTP_PASS: 'relay-secret',
        SMTP_FROM: 'Care Team <care@clinic.test>',
        LOG_LEVEL: 'fatal',
      },
    });
    workers.add(child);
    child.on('exit', () => workers.delete(child));
    return child;
  }

  it('sends exactly one notification per transition, and another process takes over when one dies', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    // Thresholds of about a second, so real processes on a real clock cross them quickly.
    const saved = await saveAlertRules(
      h.database.db,
      {
        rules: [{ id: 'patient-wait', kind: 'patient_wait', businessMinutes: 0.02, wallMinutes: 0.02, notify: ['slack', 'mail'] }],
        targets: { slack: { type: 'slack', url: slack.url }, mail: { type: 'email', to: ['oncall@clinic.test'] } },
      },
      null,
      { allowPrivateTargets: true },
    );
    expect(saved.ok).toBe(true);
    const [first] = [startWorker(), startWorker()];

    expect((await h.sendSms('+15550003001', 'hello')).status).toBe(200);
    await eventually(() => slack.received.length >= 1, { what: 'the firing notification', timeoutMs: 30_000 });
    const patientId = (await h.database.db.query<{ id: string }>(`SELECT id FROM patients`)).rows[0]!.id;
    expect((await h.api('POST', `/api/patients/${patientId}/messages`, { token: ada.token, body: { body: 'Here.' } })).status).toBe(201);
    await eventually(() => slack.received.some((r) => String(r.json.text).includes('RESOLVED')), { what: 'the resolve notice', timeoutMs: 30_000 });

    // Kill only once the resolve notice is recorded: a process killed between a receiver's 200 and its record
    // would have that row resent after its lease (the documented limit of exactly-once).
    await eventually(async () => (await h.database.db.query(`SELECT 1 FROM alert_notifications WHERE state = 'sent'`)).rowCount === 4, { what: 'four sent rows (slack and mail, firing and resolved)' });
    first!.kill('SIGKILL');
    await eventually(() => !workers.has(first!), { what: 'the worker to exit' });
    expect((await h.sendSms('+15550003002', 'anyone?')).status).toBe(200);
    await eventually(() => slack.received.length >= 3, { what: 'the second patient notification', timeoutMs: 30_000 });

    const transitions = (await h.database.db.query<{ kind: string; n: number }>(`SELECT kind, count(*)::int AS n FROM alert_transitions GROUP BY kind ORDER BY kind`)).rows;
    expect(transitions).toEqual([{ kind: 'firing', n: 2 }, { kind: 'resolved', n: 1 }]);
    // The receiver can see a POST before its sender records it as sent.
    await eventually(async () => (await h.database.db.query(`SELECT 1 FROM alert_notifications WHERE state = 'sent'`)).rowCount === 6, { what: 'six sent rows' });
    const texts = slack.received.map((r) => String(r.json.text));
    expect(texts.filter((t) => t.includes('FIRING'))).toHaveLength(2);
    expect(texts.filter((t) => t.includes('RESOLVED'))).toHaveLength(1);
    expect(texts).toHaveLength(3);
    // The same transitions by email, once each, from SMTP_FROM, through the authenticated channel server.
    const subjects = mail.received.map((m) => m.subject ?? '');
    expect(subjects.filter((t) => t.includes('FIRING'))).toHaveLength(2);
    expect(subjects.filter((t) => t.includes('RESOLVED'))).toHaveLength(1);
    expect(mail.received).toHaveLength(3);
    expect(mail.received.every((m) => m.mailFrom === 'care@clinic.test' && m.rcptTo.join() === 'oncall@clinic.test')).toBe(true);
  }, 90_000);
});
