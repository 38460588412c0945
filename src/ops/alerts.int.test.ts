import { createHmac } from 'node:crypto';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createPostgresDb, type Db } from '../db/db.ts';
import { createOutbound } from '../db/messages.ts';
import { backends, isPostgresAvailable, postgresBackend } from '../test/databases.ts';
import { startFakeAlertReceiver, type FakeAlertReceiver } from '../test/fake-alert-receiver.ts';
import { createSmtpTransport } from '../channels/email.ts';
import { startFakeSmtp } from '../test/fake-smtp.ts';
import { eventually, startHarness, type Harness } from '../test/harness.ts';
import { AlertRuleSchema, saveAlertRules } from './alert-rules.ts';
import { evaluateAlerts, evaluateRule } from './alerts.ts';
import { deliverDueNotifications, listTargetHealth, SIGNATURE_HEADER } from './notifier.ts';
import { startAlertScheduler, type AlertScheduler } from './scheduler.ts';

/** The fake receivers listen on loopback, which ALERT_TARGETS_ALLOW_PRIVATE=1 permits. */
const LOOPBACK_TARGETS = { allowPrivateTargets: true };

const logger = pino({ level: 'silent' });
const MIN = 60_000;

function waitRules(receiverUrl: string, extra: Record<string, unknown> = {}) {
  return {
    rules: [{ id: 'patient-wait', kind: 'patient_wait', businessMinutes: 15, wallMinutes: 120, repeatMinutes: 60, notify: ['oncall-slack'], ...extra }],
    targets: { 'oncall-slack': { type: 'slack', url: `${receiverUrl}/services/T000/B000/XXX` } },
  };
}

async function waitingSince(db: Db, patientId: string): Promise<Date | null> {
  return (await db.query<{ waiting_since: Date | null }>(`SELECT waiting_since FROM patients WHERE id = $1`, [patientId])).rows[0]!.waiting_since;
}

describe.each(backends())('built-in alerts on $name', (backend) => {
  let h: Harness;
  let slack: FakeAlertReceiver;
  let clock: Date;
  let scheduler: AlertScheduler;

  beforeEach(async () => {
    h = await startHarness(backend, { app: { alertTargetsAllowPrivate: true } });
    slack = await startFakeAlertReceiver();
    clock = new Date();
    scheduler = await startAlertScheduler({ db: h.database.db, logger, allowPrivateTargets: true, intervalMs: 60_000, now: () => clock }, { autoStart: false });
  });
  afterEach(async () => {
    await scheduler.stop();
    await slack.close();
    await h.close();
  });

  async function waitingPatient(from: string): Promise<{ patientId: string; since: Date }> {
    expect((await h.sendSms(from, 'my chest hurts when I breathe')).status).toBe(200);
    const row = (await h.database.db.query<{ id: string; waiting_since: Date }>(
      `SELECT p.id, p.waiting_since FROM patients p JOIN channel_identities ci ON ci.patient_id = p.id WHERE ci.address = $1`,
      [from],
    )).rows[0]!;
    return { patientId: row.id, since: row.waiting_since };
  }

  it('a wait crossing the threshold sends exactly one notification; a reply sends exactly one resolve notice', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    expect((await saveAlertRules(h.database.db, waitRules(slack.url), null, LOOPBACK_TARGETS)).ok).toBe(true);
    const { patientId, since } = await waitingPatient('+15550000001');

    clock = new Date(since.getTime() + 14 * MIN);
    expect((await scheduler.tick()).evaluation?.transitions).toEqual([]);
    expect(slack.received).toHaveLength(0);

    clock = new Date(since.getTime() + 15 * MIN + 1_000);
    const fired = await scheduler.tick();
    expect(fired.evaluation?.transitions.map((t) => t.kind)).toEqual(['firing']);
    expect(slack.received).toHaveLength(1);
    expect(slack.received[0]!.path).toBe('/services/T000/B000/XXX');
    expect(slack.received[0]!.json.text).toContain('FIRING');
    expect(slack.received[0]!.json.text).toContain(patientId);
    expect(slack.received[0]!.json.text).not.toContain('chest');

    // Still waiting, inside the repeat interval: nothing more.
    clock = new Date(since.getTime() + 30 * MIN);
    await scheduler.tick();
    await scheduler.tick();
    expect(slack.received).toHaveLength(1);

    const reply = await h.api('POST', `/api/patients/${patientId}/messages`, { token: ada.token, body: { body: 'Calling you now.' } });
    expect(reply.status).toBe(201);
    clock = new Date(since.getTime() + 31 * MIN);
    expect((await scheduler.tick()).evaluation?.transitions.map((t) => t.kind)).toEqual(['resolved']);
    await scheduler.tick();
    expect(slack.received).toHaveLength(2);
    expect(slack.received[1]!.json.text).toContain('RESOLVED');
    const alert = (await h.database.db.query<{ state: string }>(`SELECT state FROM alerts`)).rows;
    expect(alert).toEqual([{ state: 'resolved' }]);
  });

  it('a handoff does not reset the wait', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    const bob = await h.createCoordinator({ name: 'Bob' });
    expect((await saveAlertRules(h.database.db, waitRules(slack.url), null, LOOPBACK_TARGETS)).ok).toBe(true);
    const { patientId, since } = await waitingPatient('+15550000002');
    const owner = (await h.database.db.query<{ coordinator_id: string }>(`SELECT coordinator_id FROM assignments WHERE patient_id = $1`, [patientId])).rows[0]!.coordinator_id;
    const [from, to] = owner === ada.id ? [ada, bob] : [bob, ada];
    const handoff = await h.api('POST', `/api/patients/${patientId}/handoff`, { token: from.token, body: { toCoordinatorId: to.id, note: 'covering for the afternoon' } });
    expect(handoff.status).toBe(201);
    expect(await waitingSince(h.database.db, patientId)).toEqual(since);

    clock = new Date(since.getTime() + 15 * MIN + 1_000);
    await scheduler.tick();
    expect(slack.received).toHaveLength(1);
    const alert = (await h.database.db.query<{ coordinator_id: string; value: number }>(`SELECT coordinator_id, value FROM alerts`)).rows[0]!;
    expect(alert.coordinator_id).toBe(to.id);
    expect(alert.value).toBeGreaterThanOrEqual(15 * 60);
  });

  it('automatic replies do not stop the clock', async () => {
    await h.createCoordinator({ name: 'Ada' });
    expect((await saveAlertRules(h.database.db, waitRules(slack.url), null, LOOPBACK_TARGETS)).ok).toBe(true);
    const { patientId, since } = await waitingPatient('+15550000003');
    const notice = await createOutbound(h.database.db, { patientId, authorId: null, body: 'We are closed; we will reply at 9am.', automatic: true });
    expect('error' in notice).toBe(false);
    expect(await waitingSince(h.database.db, patientId)).toEqual(since);
    const stored = (await h.database.db.query<{ automatic: boolean; author_id: string | null }>(`SELECT automatic, author_id FROM messages WHERE direction = 'outbound'`)).rows;
    expect(stored).toEqual([{ automatic: true, author_id: null }]);

    clock = new Date(since.getTime() + 16 * MIN);
    await scheduler.tick();
    expect(slack.received).toHaveLength(1);
    expect(slack.received[0]!.json.text).toContain('FIRING');
  });

  it('holds a pending alert for its "for" duration, repeats at the throttle, and stops repeating once acknowledged', async () => {
    // An admin: the patient is in no team yet, and a supervisor sees only their teams' alerts (ops-scope.int.test.ts).
    const sup = await h.createCoordinator({ name: 'Sue', role: 'admin' });
    const coordinator = await h.createCoordinator({ name: 'Cal' });
    expect((await saveAlertRules(h.database.db, waitRules(slack.url, { forMinutes: 5, repeatMinutes: 30 }), null, LOOPBACK_TARGETS)).ok).toBe(true);
    const { since } = await waitingPatient('+15550000004');

    clock = new Date(since.getTime() + 15 * MIN + 1_000);
    await scheduler.tick();
    expect((await h.database.db.query(`SELECT 1 FROM alerts WHERE state = 'pending'`)).rowCount).toBe(1);
    expect(slack.received).toHaveLength(0);
    clock = new Date(since.getTime() + 20 * MIN);
    await scheduler.tick();
    expect(slack.received).toHaveLength(0);
    clock = new Date(since.getTime() + 20 * MIN + 1_000);
    await scheduler.tick();
    expect(slack.received).toHaveLength(1);

    clock = new Date(since.getTime() + 50 * MIN + 1_000);
    expect((await scheduler.tick()).evaluation?.transitions.map((t) => t.kind)).toEqual(['repeat']);
    expect(slack.received).toHaveLength(2);
    expect(slack.received[1]!.json.text).toContain('STILL FIRING');

    const banners = await h.api('GET', '/api/ops/alerts', { token: sup.token });
    expect(banners.status).toBe(200);
    expect(banners.json.alerts).toHaveLength(1);
    expect((await h.api('GET', '/api/ops/alerts', { token: coordinator.token })).status).toBe(403);
    const ack = await h.api('POST', `/api/ops/alerts/${banners.json.alerts[0].id}/ack`, { token: sup.token });
    expect(ack.status).toBe(200);
    expect((await h.api('POST', `/api/ops/alerts/${banners.json.alerts[0].id}/ack`, { token: sup.token })).status).toBe(404);

    clock = new Date(since.getTime() + 200 * MIN);
    expect((await scheduler.tick()).evaluation?.transitions).toEqual([]);
    expect(slack.received).toHaveLength(2);
  });

  it('a wait is measured on the team business clock, or 2 h of wall clock outside it', async () => {
    const db = h.database.db;
    const ada = await h.createCoordinator({ name: 'Ada' });
    const team = (await db.query<{ id: string }>(
      `INSERT INTO teams (name, timezone, business_hours) VALUES ('Care NY', 'America/New_York', $1) RETURNING id`,
      [JSON.stringify(Object.fromEntries(['mon', 'tue', 'wed', 'thu', 'fri'].map((d) => [d, [['09:00', '17:00']]])))],
    )).rows[0]!.id;
    await db.query(`INSERT INTO team_members (team_id, coordinator_id) VALUES ($1, $2)`, [team, ada.id]);
    const { patientId } = await waitingPatient('+15550000005');
    await db.query(`UPDATE assignments SET coordinator_id = $2 WHERE patient_id = $1`, [patientId, ada.id]);
    // Friday 16:50 in New York (EST): 10 open minutes are left that day.
    await db.query(`UPDATE patients SET waiting_since = '2026-11-20T21:50:00Z' WHERE id = $1`, [patientId]);
    const rule = AlertRuleSchema.parse({ id: 'w', kind: 'patient_wait', businessMinutes: 15, wallMinutes: 120 });
    expect(await evaluateRule(db, rule, new Date('2026-11-20T22:30:00Z'))).toEqual([]);
    const late = await evaluateRule(db, rule, new Date('2026-11-20T23:50:00Z'));
    expect(late.map((c) => c.subject)).toEqual([`patient:${patientId}`]);
    expect(late[0]!.summary).toContain('wall clock');
    // Monday 09:05: 10 + 5 open minutes is not yet 15; 09:06 is.
    await db.query(`UPDATE patients SET waiting_since = '2026-11-20T21:50:00Z' WHERE id = $1`, [patientId]);
    const rule2 = AlertRuleSchema.parse({ id: 'w', kind: 'patient_wait', businessMinutes: 15, wallMinutes: 10_000 });
    expect(await evaluateRule(db, rule2, new Date('2026-11-23T14:04:00Z'))).toEqual([]);
    const monday = await evaluateRule(db, rule2, new Date('2026-11-23T14:05:00Z'));
    expect(monday[0]!.summary).toContain('business hours of Care NY');
  });

  it('delivers to signed webhook, SMTP and on-call SMS; a failing target is retried, then shown failing, without blocking the others', async () => {
    const webhook = await startFakeAlertReceiver();
    const broken = await startFakeAlertReceiver();
    // The email channel's fake mail server, with auth, reached through the channel's transport factory.
    const smtp = await startFakeSmtp({ user: 'relay', pass: 'relay-secret' });
    const mailer = createSmtpTransport({ host: smtp.host, port: smtp.port, secure: false, user: 'relay', pass: 'relay-secret', timeoutMs: 5_000 });
    try {
      broken.failWith(500);
      const secret = 'alert-webhook-secret-0123456789';
      const saved = await saveAlertRules(
        h.database.db,
        {
          rules: [{ id: 'patient-wait', kind: 'patient_wait', notify: ['broken', 'hook', 'mail', 'pager'] }],
          targets: {
            broken: { type: 'slack', url: broken.url },
            hook: { type: 'webhook', url: `${webhook.url}/alerts` },
            mail: { type: 'email', to: ['oncall@example.org'] },
            pager: { type: 'sms', to: '+15557770000' },
          },
        },
        null,
        LOOPBACK_TARGETS,
      );
      expect(saved.ok).toBe(true);
      const { since } = await waitingPatient('+15550000006');
      await evaluateAlerts(h.database.db, { now: new Date(since.getTime() + 20 * MIN) });
      const deps = { db: h.database.db, logger, smsAdapter: h.adapters.get('sms'), mailer, emailFrom: 'alerts@switchboard.test', webhookSecret: secret, allowPrivateTargets: true, maxAttempts: 3, backoff: { baseMs: 1, capMs: 5 } };
      await deliverDueNotifications(deps);

      expect(webhook.received).toHaveLength(1);
      const post = webhook.received[0]!;
      expect(post.headers[SIGNATURE_HEADER]).toBe('sha256=' + createHmac('sha256', secret).update(post.rawBody).digest('hex'));
      expect(post.json).toMatchObject({ ruleId: 'patient-wait', transition: 'firing', severity: 'warning' });
      expect(smtp.received).toHaveLength(1);
      expect(smtp.received[0]!.rcptTo).toEqual(['oncall@example.org']);
      expect(smtp.received[0]!.subject).toContain('FIRING');
      const sms = h.fake.received.filter((m) => m.to === '+15557770000');
      expect(sms).toHaveLength(1);
      expect(sms[0]!.body).toContain('patient-wait');

      await eventually(async () => {
        await deliverDueNotifications(deps);
        return (await h.database.db.query(`SELECT 1 FROM alert_notifications WHERE target = 'broken' AND state = 'failed' AND attempts = 3`)).rowCount === 1;
      }, { what: 'the broken target to exhaust its retries' });
      const health = await listTargetHealth(h.database.db);
      expect(health.find((t) => t.target === 'broken')).toMatchObject({ failing: true, failed: 1 });
      expect(health.find((t) => t.target === 'hook')).toMatchObject({ failing: false, failed: 0 });
      // Nothing was sent twice.
      expect(webhook.received).toHaveLength(1);
      expect(smtp.received).toHaveLength(1);
    } finally {
      mailer.close();
      await smtp.close();
      await webhook.close();
      await broken.close();
    }
  });

  it('rejects invalid rules listing every error and keeps the previous version active', async () => {
    const admin = await h.createCoordinator({ name: 'Root', role: 'admin' });
    const first = await h.api('PUT', '/api/ops/alert-rules', { token: admin.token, body: waitRules(slack.url) });
    expect(first.status).toBe(201);
    expect(first.json.version).toBe(1);
    const bad = await h.api('PUT', '/api/ops/alert-rules', {
      token: admin.token,
      body: {
        rules: [
          { id: 'a', kind: 'patient_wait', businessMinutes: -1, notify: ['nowhere'] },
          { id: 'a', kind: 'outbox_oldest', thresholdSeconds: 'soon' },
          { id: 'b', kind: 'no_such_kind' },
        ],
        targets: { t: { type: 'slack', url: 'not a url' } },
      },
    });
    expect(bad.status).toBe(400);
    expect(bad.json.code).toBe('invalid_alert_rules');
    const paths = bad.json.details.map((d: { path: string }) => d.path).sort();
    expect(paths).toEqual(expect.arrayContaining(['rules.0.businessMinutes', 'rules.0.notify.0', 'rules.1.id', 'rules.1.thresholdSeconds', 'rules.2.kind', 'targets.t.url']));
    const active = await h.api('GET', '/api/ops/alert-rules', { token: admin.token });
    expect(active.json.active.version).toBe(1);
    expect(active.json.active.document.rules[0].id).toBe('patient-wait');
    // Cross-field problems alone are listed too.
    const dup = await h.api('PUT', '/api/ops/alert-rules', {
      token: admin.token,
      body: { rules: [{ id: 'a', kind: 'outbox_oldest', notify: ['nowhere'] }, { id: 'a', kind: 'outbox_oldest' }], targets: {} },
    });
    expect(dup.status).toBe(400);
    expect(dup.json.details.map((d: { message: string }) => d.message).sort()).toEqual(['duplicate rule id a', 'no target named nowhere']);
  });
});

describe.skipIf(!isPostgresAvailable())('alert evaluation across processes on postgres', () => {
  it('two evaluators on independent connections produce exactly one notification per transition', async () => {
    const h = await startHarness(postgresBackend, { app: { alertTargetsAllowPrivate: true } });
    const slack = await startFakeAlertReceiver();
    const dbs = [createPostgresDb({ connectionString: h.database.url! }), createPostgresDb({ connectionString: h.database.url! })];
    let clock = new Date();
    const schedulers = await Promise.all(dbs.map((db) => startAlertScheduler({ db, logger, allowPrivateTargets: true, intervalMs: 60_000, now: () => clock }, { autoStart: false })));
    try {
      await h.createCoordinator({ name: 'Ada' });
      expect((await saveAlertRules(h.database.db, waitRules(slack.url), null, LOOPBACK_TARGETS)).ok).toBe(true);
      expect((await h.sendSms('+15550000009', 'hello?')).status).toBe(200);
      const { id: patientId, waiting_since: since } = (await h.database.db.query<{ id: string; waiting_since: Date }>(`SELECT id, waiting_since FROM patients`)).rows[0]!;

      clock = new Date(since.getTime() + 20 * MIN);
      const results = await Promise.all(schedulers.map((s) => s.tick()));
      expect(results.filter((r) => r.leader)).toHaveLength(1);
      await Promise.all(schedulers.map((s) => s.tick()));
      expect(slack.received).toHaveLength(1);

      // Even without the leader lock, racing evaluators make each transition once.
      const ada = (await h.database.db.query<{ id: string }>(`SELECT id FROM coordinators`)).rows[0]!;
      await createOutbound(h.database.db, { patientId, authorId: ada.id, body: 'On it.' });
      clock = new Date(since.getTime() + 21 * MIN);
      const raced = await Promise.all(dbs.map((db) => evaluateAlerts(db, { now: clock })));
      expect(raced.flatMap((r) => r.transitions).map((t) => t.kind)).toEqual(['resolved']);
      await Promise.all(dbs.map((db) => deliverDueNotifications({ db, logger, allowPrivateTargets: true })));
      expect(slack.received).toHaveLength(2);
      expect(slack.received[1]!.json.text).toContain('RESOLVED');
    } finally {
      for (const s of schedulers) await s.stop();
      for (const db of dbs) await db.close();
      await slack.close();
      await h.close();
    }
  });
});
