import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fireDueTimers } from '../db/routing-timers.ts';
import { startRoutingTimers } from '../services/routing-timers.ts';
import { startWorker } from '../services/worker.ts';
import { backends } from '../test/databases.ts';
import { eventually, startHarness, type Harness } from '../test/harness.ts';

type Person = Awaited<ReturnType<Harness['createCoordinator']>>;
const logger = pino({ level: 'silent' });
const MINUTE = 60_000;

describe.each(backends())('routing over HTTP on $name', (backend) => {
  let h: Harness;
  let admin: Person;
  beforeEach(async () => {
    h = await startHarness(backend);
    admin = await h.createCoordinator({ name: 'Root', role: 'admin' });
  });
  afterEach(async () => {
    await h.close();
  });

  const db = () => h.database.db;

  async function createTeam(name: string, members: Person[], options: { hours?: unknown; holidays?: string[]; timezone?: string } = {}): Promise<string> {
    const team = await db().query<{ id: string }>(`INSERT INTO teams (name, timezone, business_hours, holidays) VALUES ($1, $2, $3, $4) RETURNING id`, [
      name,
      options.timezone ?? 'UTC',
      JSON.stringify(options.hours ?? {}),
      JSON.stringify(options.holidays ?? []),
    ]);
    for (const m of members) await db().query(`INSERT INTO team_members (team_id, coordinator_id) VALUES ($1, $2)`, [team.rows[0]!.id, m.id]);
    return team.rows[0]!.id;
  }

  async function saveRules(ruleSet: unknown): Promise<number> {
    const saved = await h.api('PUT', '/api/admin/routing/rules', { token: admin.token, body: { ruleSet, comment: 'test' } });
    expect(saved.status, saved.text).toBe(201);
    return saved.json.version;
  }

  async function patientByPhone(phone: string): Promise<string> {
    const found = await db().query<{ patient_id: string }>(`SELECT patient_id FROM channel_identities WHERE address = $1`, [phone]);
    return found.rows[0]!.patient_id;
  }

  async function assignmentOf(patientId: string): Promise<{ coordinator_id: string | null; team_id: string | null }> {
    const found = await db().query<{ coordinator_id: string | null; team_id: string | null }>(`SELECT coordinator_id, team_id FROM assignments WHERE patient_id = $1`, [patientId]);
    return found.rows[0] ?? { coordinator_id: null, team_id: null };
  }

  async function timelineKinds(patientId: string): Promise<string[]> {
    const items = (await h.api('GET', `/api/patients/${patientId}/timeline`, { token: admin.token })).json.items;
    return items.map((i: any) => (i.type === 'event' ? i.kind : `${i.direction}${i.body ? `:${i.body}` : ''}`));
  }

  async function insertPatient(phone: string, attributes: { language?: string; program?: string } = {}): Promise<string> {
    const p = await db().query<{ id: string }>(`INSERT INTO patients (language, program) VALUES ($1, $2) RETURNING id`, [attributes.language ?? null, attributes.program ?? null]);
    await db().query(`INSERT INTO channel_identities (patient_id, channel, address) VALUES ($1, 'sms', $2)`, [p.rows[0]!.id, phone]);
    return p.rows[0]!.id;
  }

  const defaultRule = (queueTeamId: string) => ({ target: { kind: 'team', teamId: queueTeamId, strategy: 'least_loaded' }, queueTeamId });

  it('rejects an invalid rule set listing every error, keeps the previous version active, and versions every change', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    const team = await createTeam('Intake', [ada]);
    const v1 = await saveRules({ rules: [], defaultRule: defaultRule(team) });
    expect(v1).toBe(1);

    const bad = await h.api('PUT', '/api/admin/routing/rules', {
      token: admin.token,
      body: {
        ruleSet: {
          rules: [
            { id: 'a', name: 'Unknown coordinator', conditions: { fact: 'message.text', op: 'contains', value: 'x' }, target: { kind: 'coordinator', coordinatorId: '00000000-0000-4000-8000-000000000099' } },
            { id: 'b', name: 'Unknown team', conditions: { fact: 'patient.languag', op: 'eq', value: 'es' }, target: { kind: 'team', teamId: '00000000-0000-4000-8000-000000000098', strategy: 'round_robin' } },
            { id: 'c', name: 'Bad regex', conditions: { any: [{ fact: 'message.text', op: 'matches', value: '(unclosed' }, { fact: 'message.text', op: 'matches', value: 'foo(?=bar)' }] }, target: { kind: 'sticky' } },
          ],
          defaultRule: defaultRule(team),
        },
      },
    });
    expect(bad.status).toBe(422);
    expect(bad.json.code).toBe('invalid_rule_set');
    const messages = bad.json.details.map((d: { path: string; message: string }) => `${d.path}: ${d.message}`);
    expect(messages).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^rules\[0\]\.target\.coordinatorId: unknown coordinator/),
        expect.stringMatching(/^rules\[1\]\.conditions\.fact: unknown fact "patient\.languag"; did you mean "patient\.language"/),
        expect.stringMatching(/^rules\[1\]\.target\.teamId: unknown team/),
        expect.stringMatching(/^rules\[2\]\.conditions\.any\[0\]\.value: invalid regular expression/),
        expect.stringMatching(/^rules\[2\]\.conditions\.any\[1\]\.value: lookahead \(\?= \/ \?!\) is not supported/),
      ]),
    );
    expect(messages).toHaveLength(5);

    const active = await h.api('GET', '/api/admin/routing/rules', { token: admin.token });
    expect(active.json).toMatchObject({ version: 1, authorId: admin.id });

    // Only admins change rules.
    expect((await h.api('PUT', '/api/admin/routing/rules', { token: ada.token, body: { ruleSet: { rules: [], defaultRule: defaultRule(team) } } })).status).toBe(403);

    const v2 = await saveRules({ rules: [{ id: 'x', name: 'X', conditions: { fact: 'message.hasMedia', op: 'eq', value: true }, target: { kind: 'sticky' } }], defaultRule: defaultRule(team) });
    expect(v2).toBe(2);
    const versions = (await h.api('GET', '/api/admin/routing/rules/versions', { token: admin.token })).json.versions;
    expect(versions.map((v: any) => [v.version, v.authorId, v.rules])).toEqual([
      [2, admin.id, 1],
      [1, admin.id, 0],
    ]);

    // Export → import round trip; re-activating version 1 stores it again as version 4.
    const exported = await h.api('GET', '/api/admin/routing/rules/export', { token: admin.token });
    expect(exported.status).toBe(200);
    expect(exported.json).toMatchObject({ format: 'switchboard.routing-rules/v1', version: 2 });
    const imported = await h.api('POST', '/api/admin/routing/rules/import', { token: admin.token, body: exported.json });
    expect(imported.status).toBe(201);
    expect(imported.json.version).toBe(3);
    expect(imported.json.ruleSet).toEqual(exported.json.ruleSet);
    const activated = await h.api('POST', '/api/admin/routing/rules/versions/1/activate', { token: admin.token });
    expect(activated.json).toMatchObject({ version: 4, comment: 'activated version 1' });
    expect((await h.api('GET', '/api/admin/routing/rules', { token: admin.token })).json.ruleSet.rules).toEqual([]);

    const audit = (await h.api('GET', '/api/admin/audit?limit=50', { token: admin.token })).json.entries.map((e: any) => e.action);
    expect(audit.filter((a: string) => a.startsWith('routing.rules'))).toEqual(
      ['routing.rules.activate', 'routing.rules.import', 'routing.rules.export', 'routing.rules.save', 'routing.rules.save_rejected', 'routing.rules.save'],
    );
  });

  it('after hours: one automatic reply with an emergency disclaimer per interval, through the outbox, and the patient keeps waiting', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    // Closed today (and either side of it, so the test does not depend on when it runs): holidays in UTC.
    const day = (offset: number) => new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10);
    const team = await createTeam('Clinic', [ada], { holidays: [day(-1), day(0), day(1)] });
    await saveRules({
      rules: [
        {
          id: 'after-hours',
          name: 'After hours',
          conditions: { not: { fact: 'time', op: 'within_hours', value: { team } } },
          target: { kind: 'team', teamId: team, strategy: 'least_loaded' },
          actions: [
            { type: 'auto_reply', text: 'We are closed and will reply tomorrow. If this is an emergency, call 911.', minIntervalMinutes: 240 },
            { type: 'add_tags', tags: ['after-hours'] },
          ],
        },
      ],
      defaultRule: defaultRule(team),
    });
    await h.startRelay();
    await h.sendSms('+15550001001', 'Are you there?');
    await eventually(() => h.fake.received.find((m) => m.to === '+15550001001'), { what: 'the automatic reply' });
    expect(h.fake.received.filter((m) => m.to === '+15550001001').map((m) => m.body)).toEqual(['We are closed and will reply tomorrow. If this is an emergency, call 911.']);

    const patientId = await patientByPhone('+15550001001');
    const patient = await db().query<{ waiting_since: Date | null; tags: string[] }>(`SELECT waiting_since, tags FROM patients WHERE id = $1`, [patientId]);
    expect(patient.rows[0]!.waiting_since).not.toBeNull();
    expect(patient.rows[0]!.tags).toEqual(['after-hours']);
    const auto = await db().query<{ automatic: boolean; author_id: string | null }>(`SELECT automatic, author_id FROM messages WHERE direction = 'outbound'`);
    expect(auto.rows).toEqual([{ automatic: true, author_id: null }]);
    expect((await h.api('GET', '/api/inbox', { token: ada.token })).json.patients[0].waitingSince).not.toBeNull();

    // Within the interval: no second reply, and the timeline says why.
    await h.sendSms('+15550001001', 'Hello??');
    const items = (await h.api('GET', `/api/patients/${patientId}/timeline`, { token: admin.token })).json.items;
    const routed = items.filter((i: any) => i.kind === 'routed');
    expect(routed).toHaveLength(2);
    expect(routed[1].detail.suppressedActions).toEqual([{ type: 'auto_reply', reason: 'auto_reply_interval' }]);
    expect(routed[1].detail.explanation).toContain('time within_hours');

    // Once the interval has passed, the next message gets a reply again.
    await db().query(`UPDATE patients SET last_auto_reply_at = last_auto_reply_at - interval '241 minutes' WHERE id = $1`, [patientId]);
    await h.sendSms('+15550001001', 'Still there?');
    await eventually(() => h.fake.received.filter((m) => m.to === '+15550001001').length === 2, { what: 'the second automatic reply' });
    expect(await timelineKinds(patientId)).toEqual([
      'inbound:Are you there?',
      'routed',
      'outbound:We are closed and will reply tomorrow. If this is an emergency, call 911.',
      'inbound:Hello??',
      'routed',
      'inbound:Still there?',
      'routed',
      'outbound:We are closed and will reply tomorrow. If this is an emergency, call 911.',
    ]);
  });

  it('routes by language to a team member with that skill, and stores the deciding facts', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    const bea = await h.createCoordinator({ name: 'Bea' });
    const carl = await h.createCoordinator({ name: 'Carl' });
    await db().query(`UPDATE coordinators SET languages = '{en,es}' WHERE id = $1`, [carl.id]);
    const spanish = await createTeam('Spanish', [bea, carl]);
    const intake = await createTeam('Intake', [ada]);
    const version = await saveRules({
      rules: [
        {
          id: 'spanish',
          name: 'Spanish speakers',
          conditions: { fact: 'patient.language', op: 'eq', value: 'es' },
          target: { kind: 'team', teamId: spanish, strategy: 'least_loaded', requiredSkills: ['es'] },
          overrideAssignment: true,
        },
      ],
      defaultRule: defaultRule(intake),
    });
    const rosa = await insertPatient('+15550002001', { language: 'es' });
    const john = await insertPatient('+15550002002', { language: 'en' });
    await h.sendSms('+15550002001', 'Hola, necesito ayuda');
    await h.sendSms('+15550002002', 'Hi, I need help');
    expect((await assignmentOf(rosa)).coordinator_id).toBe(carl.id);
    expect((await assignmentOf(john)).coordinator_id).toBe(ada.id);

    const decision = await db().query<{ rule_set_version: number; rule_id: string; facts: any; decision: any }>(`SELECT * FROM routing_decisions WHERE patient_id = $1`, [rosa]);
    expect(decision.rows[0]).toMatchObject({ rule_set_version: version, rule_id: 'spanish', facts: { patient: { language: 'es' } } });
    expect(decision.rows[0]!.decision.explanation.conditions).toEqual([expect.objectContaining({ fact: 'patient.language', actual: 'es', result: true })]);
    const pool = decision.rows[0]!.decision.explanation.resolution.find((s: any) => s.step === 'pool');
    expect(pool).toMatchObject({ members: 2, eligible: 1, excluded: { missingSkills: 1 }, chosen: carl.id });
  });

  it('gives every inbound message exactly one decision and never fills a coordinator past capacity, under concurrency', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    await db().query(`UPDATE coordinators SET capacity = 3 WHERE id = $1`, [ada.id]);
    const sends = Array.from({ length: 8 }, (_, i) => h.sendSms(`+155500120${i}0`, 'hello', `SMcapacity${i}`));
    // Redeliveries of two of them race the originals.
    sends.push(h.sendSms('+15550012000', 'hello', 'SMcapacity0'), h.sendSms('+15550012010', 'hello', 'SMcapacity1'));
    expect((await Promise.all(sends)).map((r) => r.status)).toEqual(Array(10).fill(200));
    const counts = await db().query<{ inbound: number; decisions: number; ada: number; queued: number }>(
      `SELECT (SELECT count(*)::int FROM messages WHERE direction = 'inbound') AS inbound,
              (SELECT count(*)::int FROM routing_decisions) AS decisions,
              (SELECT count(*)::int FROM assignments WHERE coordinator_id = $1) AS ada,
              (SELECT count(*)::int FROM assignments WHERE coordinator_id IS NULL) AS queued`,
      [ada.id],
    );
    expect(counts.rows[0]).toEqual({ inbound: 8, decisions: 8, ada: 3, queued: 5 });
  });

  it('moves an unanswered message to the next target when its timer runs out, processed by the worker with an injected clock', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    const grace = await h.createCoordinator({ name: 'Grace' });
    const team = await createTeam('Intake', [ada, grace]);
    await saveRules({
      rules: [],
      defaultRule: {
        target: { kind: 'coordinator', coordinatorId: ada.id },
        fallbacks: [{ target: { kind: 'coordinator', coordinatorId: grace.id }, afterMinutes: 10 }],
        queueTeamId: team,
      },
    });
    await h.sendSms('+15550003001', 'first patient');
    await h.sendSms('+15550003002', 'second patient');
    const first = await patientByPhone('+15550003001');
    const second = await patientByPhone('+15550003002');
    expect((await assignmentOf(first)).coordinator_id).toBe(ada.id);
    // Ada answers the second patient in time; the first waits.
    expect((await h.api('POST', `/api/patients/${second}/messages`, { token: ada.token, body: { body: 'On it' } })).status).toBe(201);
    // A later message from the first patient does not restart the clock.
    await h.sendSms('+15550003001', 'anyone?');
    expect((await db().query(`SELECT 1 FROM routing_timers WHERE patient_id = $1`, [first])).rowCount).toBe(1);

    let clock = new Date(Date.now() + 9 * MINUTE);
    const worker = await startWorker({ db: db(), adapters: h.adapters, logger, maxInFlight: 10, sendTimeoutMs: 2_000, pollMs: 200, routingTimerPollMs: 20, now: () => clock });
    try {
      expect(await worker.routingTimers.tick()).toBe(0);
      expect((await assignmentOf(first)).coordinator_id).toBe(ada.id);
      clock = new Date(Date.now() + 11 * MINUTE);
      await eventually(async () => (await assignmentOf(first)).coordinator_id === grace.id, { what: 'escalation to Grace' });
      await eventually(async () => (await db().query(`SELECT 1 FROM routing_timers WHERE fired_at IS NULL`)).rowCount === 0, { what: 'every timer closed' });
    } finally {
      await worker.stop();
    }
    expect((await assignmentOf(second)).coordinator_id).toBe(ada.id);
    const outcomes = await db().query<{ patient_id: string; outcome: string }>(`SELECT patient_id, outcome FROM routing_timers ORDER BY outcome`);
    expect(outcomes.rows).toEqual([
      { patient_id: second, outcome: 'answered' },
      { patient_id: first, outcome: 'escalated' },
    ]);
    expect(await timelineKinds(first)).toEqual(['inbound:first patient', 'routed', 'inbound:anyone?', 'routed', 'escalated']);
    const escalated = (await h.api('GET', `/api/patients/${first}/timeline`, { token: grace.token })).json.items.at(-1);
    expect(escalated).toMatchObject({ kind: 'escalated', fromCoordinatorId: ada.id, toCoordinatorId: grace.id });
    expect(escalated.detail.explanation).toContain(`Escalated from ${ada.id} to coordinator ${grace.id}`);
  });

  it('fires each due timer once however many workers race for it', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    const team = await createTeam('Intake', [ada]);
    await saveRules({ rules: [], defaultRule: { target: { kind: 'coordinator', coordinatorId: ada.id }, fallbacks: [{ target: { kind: 'team', teamId: team, strategy: 'round_robin' }, afterMinutes: 5 }], queueTeamId: team } });
    for (let i = 0; i < 6; i++) await h.sendSms(`+1555000400${i}`, 'help');
    const later = new Date(Date.now() + 6 * MINUTE);
    const workers = [0, 1, 2].map(() => startRoutingTimers({ db: db(), logger, pollMs: 3_600_000, now: () => later }));
    try {
      const fired = await Promise.all([...workers.map((w) => w.tick()), fireDueTimers(db(), later)]);
      expect(fired.reduce((a, b) => a + b, 0)).toBe(6);
    } finally {
      await Promise.all(workers.map((w) => w.stop()));
    }
    const escalations = await db().query<{ n: number }>(`SELECT count(*)::int AS n FROM patient_events WHERE kind = 'escalated'`);
    expect(escalations.rows[0]!.n).toBe(6);
    // Ada let them lapse, so the pool leaves her out: nobody else is in the team, so they wait in its queue.
    const queue = await h.api('GET', `/api/teams/${team}/queue`, { token: ada.token });
    expect(queue.json.patients).toHaveLength(6);
  });

  it('hands off with an accept step: the note is pinned, accept stops the timer, and the wait clock carries over', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    await h.sendSms('+15550005001', 'My insurance changed');
    const grace = await h.createCoordinator({ name: 'Grace' });
    const patientId = await patientByPhone('+15550005001');
    const waitingBefore = (await db().query<{ waiting_since: Date }>(`SELECT waiting_since FROM patients WHERE id = $1`, [patientId])).rows[0]!.waiting_since;

    const handoff = await h.api('POST', `/api/patients/${patientId}/handoff`, { token: ada.token, body: { toCoordinatorId: grace.id, note: 'Grace knows insurance', requireAccept: true, acceptWithinMinutes: 5 } });
    expect(handoff.status).toBe(201);
    expect(handoff.json).toMatchObject({ state: 'pending', fromCoordinatorId: ada.id, toCoordinatorId: grace.id });
    const routing = await h.api('GET', `/api/patients/${patientId}/routing`, { token: grace.token });
    expect(routing.json.pinnedHandoff).toMatchObject({ note: 'Grace knows insurance', state: 'pending', fromCoordinatorId: ada.id });
    expect(routing.json.openTimer).toMatchObject({ kind: 'handoff_accept', coordinatorId: grace.id });

    expect((await h.api('POST', `/api/handoffs/${handoff.json.handoffId}/accept`, { token: ada.token })).status).toBe(403);
    const accepted = await h.api('POST', `/api/handoffs/${handoff.json.handoffId}/accept`, { token: grace.token });
    expect(accepted.status).toBe(200);
    expect((await h.api('POST', `/api/handoffs/${handoff.json.handoffId}/accept`, { token: grace.token })).status).toBe(409);
    // The timer was stopped by the accept: firing later changes nothing.
    expect(await fireDueTimers(db(), new Date(Date.now() + 60 * MINUTE))).toBe(0);
    expect((await assignmentOf(patientId)).coordinator_id).toBe(grace.id);
    const waitingAfter = (await db().query<{ waiting_since: Date }>(`SELECT waiting_since FROM patients WHERE id = $1`, [patientId])).rows[0]!.waiting_since;
    expect(waitingAfter).toEqual(waitingBefore);
    expect(await timelineKinds(patientId)).toEqual(['inbound:My insurance changed', 'routed', 'handoff', 'handoff_accepted']);
    const audit = (await h.api('GET', `/api/admin/audit?patientId=${patientId}`, { token: admin.token })).json.entries.map((e: any) => e.action);
    expect(audit).toEqual(expect.arrayContaining(['patient.handoff', 'handoff.accept']));
  });

  it('escalates a handoff nobody accepts in time to its fallback, and a declined one at once', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    await h.sendSms('+15550006001', 'question one');
    await h.sendSms('+15550006002', 'question two');
    const grace = await h.createCoordinator({ name: 'Grace' });
    const carl = await h.createCoordinator({ name: 'Carl' });
    const one = await patientByPhone('+15550006001');
    const two = await patientByPhone('+15550006002');
    const waitingBefore = (await db().query<{ waiting_since: Date }>(`SELECT waiting_since FROM patients WHERE id = $1`, [one])).rows[0]!.waiting_since;

    const first = await h.api('POST', `/api/patients/${one}/handoff`, {
      token: ada.token,
      body: { toCoordinatorId: grace.id, note: 'Please take over', requireAccept: true, acceptWithinMinutes: 5, fallback: { kind: 'coordinator', coordinatorId: carl.id } },
    });
    expect(first.status).toBe(201);
    expect(await fireDueTimers(db(), new Date(Date.now() + 4 * MINUTE))).toBe(0);
    expect(await fireDueTimers(db(), new Date(Date.now() + 6 * MINUTE))).toBe(1);
    expect((await assignmentOf(one)).coordinator_id).toBe(carl.id);
    expect(await timelineKinds(one)).toEqual(['inbound:question one', 'routed', 'handoff', 'handoff_expired', 'escalated']);
    expect((await db().query<{ waiting_since: Date }>(`SELECT waiting_since FROM patients WHERE id = $1`, [one])).rows[0]!.waiting_since).toEqual(waitingBefore);
    expect((await h.api('POST', `/api/handoffs/${first.json.handoffId}/accept`, { token: grace.token })).status).toBe(409);

    const second = await h.api('POST', `/api/patients/${two}/handoff`, {
      token: ada.token,
      body: { toCoordinatorId: grace.id, note: 'Also this one', requireAccept: true, fallback: { kind: 'coordinator', coordinatorId: carl.id } },
    });
    const declined = await h.api('POST', `/api/handoffs/${second.json.handoffId}/decline`, { token: grace.token, body: { reason: 'on leave tomorrow' } });
    expect(declined.status).toBe(200);
    expect(declined.json).toMatchObject({ coordinatorId: carl.id });
    expect(await timelineKinds(two)).toEqual(['inbound:question two', 'routed', 'handoff', 'handoff_declined', 'escalated']);
    const audit = (await h.api('GET', `/api/admin/audit?patientId=${two}`, { token: admin.token })).json.entries.map((e: any) => e.action);
    expect(audit).toEqual(expect.arrayContaining(['patient.handoff', 'handoff.decline']));
  });

  it('dry-run answers who and why without side effects, and matches the real decision', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    const bea = await h.createCoordinator({ name: 'Bea' });
    const intake = await createTeam('Intake', [ada, bea]);
    const urgent = await createTeam('Urgent', [bea]);
    await saveRules({
      rules: [
        {
          id: 'chest-pain',
          name: 'Chest pain',
          conditions: { all: [{ fact: 'message.text', op: 'matches', value: 'chest\\s+pain' }, { fact: 'message.channel', op: 'eq', value: 'sms' }] },
          target: { kind: 'team', teamId: urgent, strategy: 'round_robin' },
          overrideAssignment: true,
          actions: [{ type: 'raise_alert', severity: 'critical', message: 'possible cardiac event' }, { type: 'set_priority', priority: 'urgent' }],
        },
        { id: 'refills', name: 'Refills', conditions: { fact: 'message.text', op: 'contains', value: 'refill' }, target: { kind: 'coordinator', coordinatorId: ada.id } },
      ],
      defaultRule: defaultRule(intake),
    });
    const counts = async () => (await db().query<{ n: string }>(`SELECT (SELECT count(*) FROM routing_decisions) || '/' || (SELECT count(*) FROM assignments) || '/' || (SELECT count(*) FROM patient_events) || '/' || (SELECT count(*) FROM messages) AS n`)).rows[0]!.n;

    // A new patient: a hypothetical one with no attributes.
    const before = await counts();
    const dry = await h.api('POST', '/api/routing/dry-run', { token: admin.token, body: { patient: {}, message: { text: 'I need a refill please', channel: 'sms' } } });
    expect(dry.status, dry.text).toBe(200);
    expect(await counts()).toBe(before);
    expect(dry.json).toMatchObject({ ruleSetVersion: 1, decision: { ruleId: 'refills', assignment: { kind: 'coordinator', coordinatorId: ada.id } } });
    expect(dry.json.explanation).toContain('rule "Refills" (refills)');
    await h.sendSms('+15550007001', 'I need a refill please');
    const patientId = await patientByPhone('+15550007001');
    const real = await db().query<{ rule_id: string; rule_set_version: number; assignment: unknown }>(`SELECT rule_id, rule_set_version, assignment FROM routing_decisions WHERE patient_id = $1`, [patientId]);
    expect(real.rows).toEqual([{ rule_id: dry.json.decision.ruleId, rule_set_version: dry.json.ruleSetVersion, assignment: dry.json.decision.assignment }]);

    // The same patient, now known (current coordinator Ada), writing about chest pain.
    const dry2 = await h.api('POST', '/api/routing/dry-run', { token: admin.token, body: { patientId, message: { text: 'I have chest  pain', channel: 'sms' } } });
    expect(dry2.json.decision).toMatchObject({ ruleId: 'chest-pain', assignment: { kind: 'coordinator', coordinatorId: bea.id } });
    expect(dry2.json.decision.explanation.conditions.filter((c: any) => c.ruleId === 'chest-pain').map((c: any) => c.result)).toEqual([true, true]);
    await h.sendSms('+15550007001', 'I have chest  pain');
    const real2 = await db().query<{ rule_id: string; assignment: unknown }>(`SELECT rule_id, assignment FROM routing_decisions WHERE patient_id = $1 ORDER BY decided_at DESC LIMIT 1`, [patientId]);
    expect(real2.rows[0]).toEqual({ rule_id: dry2.json.decision.ruleId, assignment: dry2.json.decision.assignment });
    const kinds = await timelineKinds(patientId);
    expect(kinds.slice(-3)).toEqual(['inbound:I have chest  pain', 'routed', 'alert']);
    expect((await db().query<{ priority: number }>(`SELECT priority FROM patients WHERE id = $1`, [patientId])).rows[0]!.priority).toBe(2);

    // Coordinators may not dry-run; bad input is listed.
    expect((await h.api('POST', '/api/routing/dry-run', { token: ada.token, body: { message: { text: 'x', channel: 'sms' } } })).status).toBe(403);
    const invalid = await h.api('POST', '/api/routing/dry-run', { token: admin.token, body: { message: { text: 'x', channel: 'pigeon' } } });
    expect(invalid.status).toBe(400);
  });

  it('evaluates a pattern that backtracks exponentially in V8 in linear time: the server keeps answering', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    const intake = await createTeam('Intake', [ada]);
    const ruleSet = {
      rules: [{ id: 'as', name: 'Only as', conditions: { fact: 'message.text', op: 'matches', value: '^(a|a)*$' }, target: { kind: 'coordinator', coordinatorId: ada.id } }],
      defaultRule: defaultRule(intake),
    };
    // With V8's RegExp, 10k characters that almost match take 2^10000 steps and the process never answers again.
    const almost = `${'a'.repeat(9_999)}!`;
    const [dry, health] = await Promise.all([
      h.api('POST', '/api/routing/dry-run', { token: admin.token, body: { ruleSet, patient: {}, message: { text: almost, channel: 'sms' } } }),
      h.api('GET', '/api/health'),
    ]);
    expect(dry.status, dry.text).toBe(200);
    expect(dry.json.decision.ruleId).toBe('default');
    expect(health.status).toBe(200);

    // Saved, the same rule routes an inbound SMS inside the webhook's transaction.
    await saveRules(ruleSet);
    const sms = await h.sendSms('+15550007100', almost.slice(-1_600));
    expect(sms.status).toBe(200);
    const exact = await h.sendSms('+15550007101', 'a'.repeat(1_600));
    expect(exact.status).toBe(200);
    const decided = await db().query<{ address: string; rule_id: string }>(
      `SELECT ci.address, d.rule_id FROM routing_decisions d JOIN channel_identities ci ON ci.patient_id = d.patient_id ORDER BY ci.address`,
    );
    expect(decided.rows).toEqual([
      { address: '+15550007100', rule_id: 'default' },
      { address: '+15550007101', rule_id: 'as' },
    ]);
  });

  it('queues a message nobody can take; any team member may claim it, others may not', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    const bea = await h.createCoordinator({ name: 'Bea' });
    const outsider = await h.createCoordinator({ name: 'Otto' });
    const team = await createTeam('Night', [ada, bea]);
    const other = await createTeam('Other', [outsider]);
    await saveRules({ rules: [], defaultRule: { target: { kind: 'team', teamId: team, strategy: 'round_robin' }, queueTeamId: team } });
    for (const c of [ada, bea]) {
      expect((await h.api('PUT', `/api/coordinators/${c.id}/status`, { token: c.token, body: { status: 'away' } })).status).toBe(200);
    }
    expect((await h.api('PUT', `/api/coordinators/${ada.id}/status`, { token: bea.token, body: { status: 'available' } })).status).toBe(403);
    await h.sendSms('+15550008001', 'is anyone there');
    const patientId = await patientByPhone('+15550008001');
    expect(await assignmentOf(patientId)).toEqual({ coordinator_id: null, team_id: team });

    const queue = await h.api('GET', `/api/teams/${team}/queue`, { token: bea.token });
    expect(queue.json.patients.map((p: any) => p.patientId)).toEqual([patientId]);
    expect((await h.api('GET', `/api/teams/${team}/queue`, { token: outsider.token })).status).toBe(404);
    expect((await h.api('POST', `/api/patients/${patientId}/claim`, { token: outsider.token })).status).toBe(404);
    void other;

    const claim = await h.api('POST', `/api/patients/${patientId}/claim`, { token: bea.token });
    expect(claim.status).toBe(200);
    expect(await assignmentOf(patientId)).toEqual({ coordinator_id: bea.id, team_id: null });
    expect((await h.api('POST', `/api/patients/${patientId}/claim`, { token: ada.token })).status).toBe(404);
    expect((await h.api('GET', '/api/inbox', { token: bea.token })).json.patients.map((p: any) => p.patientId)).toEqual([patientId]);
    expect(await timelineKinds(patientId)).toEqual(['inbound:is anyone there', 'routed', 'claimed']);
    const audit = (await h.api('GET', `/api/admin/audit?patientId=${patientId}`, { token: admin.token })).json.entries.map((e: any) => e.action);
    expect(audit).toContain('patient.claim');
  });

  it('hands off to a team: the note is pinned for the queue, a member claims it, and an unclaimed one escalates', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    await h.sendSms('+15550010001', 'billing question');
    await h.sendSms('+15550010002', 'another billing question');
    const bea = await h.createCoordinator({ name: 'Bea' });
    const carl = await h.createCoordinator({ name: 'Carl' });
    const billing = await createTeam('Billing', [bea]);
    const one = await patientByPhone('+15550010001');
    const two = await patientByPhone('+15550010002');

    const toTeam = await h.api('POST', `/api/patients/${one}/handoff`, { token: ada.token, body: { toTeamId: billing, note: 'Billing dispute, see invoice 42' } });
    expect(toTeam.status).toBe(201);
    expect(toTeam.json).toMatchObject({ state: 'pending', toTeamId: billing, toCoordinatorId: null, acceptBy: null });
    expect(await assignmentOf(one)).toEqual({ coordinator_id: null, team_id: billing });
    const seen = await h.api('GET', `/api/patients/${one}/routing`, { token: bea.token });
    expect(seen.json.pinnedHandoff).toMatchObject({ note: 'Billing dispute, see invoice 42', toTeamId: billing, state: 'pending' });
    expect((await h.api('GET', `/api/patients/${one}/routing`, { token: carl.token })).status).toBe(404);
    // A new message does not pull the patient out of the team's queue (the built-in rule would give them to
    // the least loaded coordinator); dry-run says the same.
    const dry = await h.api('POST', '/api/routing/dry-run', { token: admin.token, body: { patientId: one, message: { text: 'any news?', channel: 'sms' } } });
    expect(dry.json.decision.assignment).toEqual({ kind: 'queue', teamId: billing });
    await h.sendSms('+15550010001', 'any news?');
    expect(await assignmentOf(one)).toEqual({ coordinator_id: null, team_id: billing });
    expect((await h.api('POST', `/api/patients/${one}/claim`, { token: bea.token })).status).toBe(200);
    expect((await h.api('GET', `/api/patients/${one}/routing`, { token: bea.token })).json.pinnedHandoff).toMatchObject({ state: 'accepted' });
    expect(await timelineKinds(one)).toEqual(['inbound:billing question', 'routed', 'handoff', 'inbound:any news?', 'routed', 'claimed']);

    // Nobody in the team claims the second within 10 minutes: it goes to the fallback.
    await h.api('PUT', `/api/coordinators/${bea.id}/status`, { token: bea.token, body: { status: 'away' } });
    const unclaimed = await h.api('POST', `/api/patients/${two}/handoff`, {
      token: ada.token,
      body: { toTeamId: billing, note: 'Also billing', acceptWithinMinutes: 10, fallback: { kind: 'coordinator', coordinatorId: carl.id } },
    });
    expect(unclaimed.json.acceptBy).not.toBeNull();
    expect(await fireDueTimers(db(), new Date(Date.now() + 11 * MINUTE))).toBe(1);
    expect(await assignmentOf(two)).toEqual({ coordinator_id: carl.id, team_id: null });
    expect(await timelineKinds(two)).toEqual(['inbound:another billing question', 'routed', 'handoff', 'handoff_expired', 'escalated']);
  });

  it("an away coordinator's messages follow their fallback and come back on their return; supervisors reassign in bulk", async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    await h.sendSms('+15550009001', 'hello');
    await h.sendSms('+15550009002', 'hello');
    const grace = await h.createCoordinator({ name: 'Grace' });
    const one = await patientByPhone('+15550009001');
    const two = await patientByPhone('+15550009002');

    const away = await h.api('PUT', `/api/coordinators/${ada.id}/status`, { token: ada.token, body: { status: 'out_of_office', fallbackTarget: { kind: 'coordinator', coordinatorId: grace.id }, returnWhenBack: true } });
    expect(away.status).toBe(200);
    await h.sendSms('+15550009001', 'are you there?');
    expect((await assignmentOf(one)).coordinator_id).toBe(grace.id);
    expect((await assignmentOf(two)).coordinator_id).toBe(ada.id);
    const back = await h.api('PUT', `/api/coordinators/${ada.id}/status`, { token: ada.token, body: { status: 'available' } });
    expect(back.json.returnedPatients).toEqual([one]);
    expect((await assignmentOf(one)).coordinator_id).toBe(ada.id);
    expect(await timelineKinds(one)).toEqual(['inbound:hello', 'routed', 'inbound:are you there?', 'routed', 'returned']);

    const supervisor = await h.createCoordinator({ name: 'Sue', role: 'supervisor' });
    // A supervisor reassigns within the teams they supervise (issue 13).
    await createTeam('Day', [supervisor, ada, grace]);
    expect((await h.api('POST', '/api/routing/reassign', { token: grace.token, body: { fromCoordinatorId: ada.id, toCoordinatorId: grace.id } })).status).toBe(403);
    const bulk = await h.api('POST', '/api/routing/reassign', { token: supervisor.token, body: { fromCoordinatorId: ada.id, toCoordinatorId: grace.id, note: 'Ada is on leave' } });
    expect(bulk.json.moved).toBe(2);
    expect((await h.api('GET', '/api/inbox', { token: ada.token })).json.patients).toHaveLength(0);
    expect((await h.api('GET', '/api/inbox', { token: grace.token })).json.patients).toHaveLength(2);
    const last = (await h.api('GET', `/api/patients/${two}/timeline`, { token: grace.token })).json.items.at(-1);
    expect(last).toMatchObject({ kind: 'reassigned', actorId: supervisor.id, fromCoordinatorId: ada.id, toCoordinatorId: grace.id, note: 'Ada is on leave' });
  });
});
