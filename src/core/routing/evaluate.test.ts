import { describe, expect, it } from 'vitest';
import { coordinator, NINE_TO_FIVE, oneRule, routingFacts, ruleSet } from './fixtures.ts';
import { compileRuleSet, describeDecision, escalateDecision, routeMessage } from './evaluate.ts';
import { RoutingFactsSchema, type RoutingFacts } from './facts.ts';
import type { RuleSetInput } from './rules.ts';

const NOW = new Date('2026-03-04T18:00:00Z'); // Wednesday 13:00 in New York
const always = { all: [] };
const spanish = { fact: 'patient.language', op: 'eq', value: 'es' } as const;
const toSpanishTeam = { kind: 'team', teamId: 'spanish', strategy: 'least_loaded' } as const;

const staff = () => [
  coordinator('c1', { teamIds: ['intake'] }),
  coordinator('c2', { teamIds: ['intake'], load: 2 }),
  coordinator('s1', { teamIds: ['spanish'], languages: ['es'], load: 1 }),
  coordinator('s2', { teamIds: ['spanish'], languages: ['es'], load: 0 }),
];

describe('rule selection', () => {
  const rules = ruleSet({
    version: 7,
    rules: [
      { id: 'off', name: 'Disabled', enabled: false, conditions: always, target: { kind: 'coordinator', coordinatorId: 'c2' } },
      { id: 'es', name: 'Spanish', conditions: spanish, target: toSpanishTeam },
      { id: 'any', name: 'Catch media', conditions: { fact: 'message.hasMedia', op: 'eq', value: true }, target: { kind: 'coordinator', coordinatorId: 'c2' } },
    ],
  });

  it('takes the first enabled rule that matches', () => {
    const decision = routeMessage(rules, routingFacts({ patient: { language: 'ES' }, message: { hasMedia: true }, coordinators: staff() }), NOW);
    expect(decision).toMatchObject({ ruleSetVersion: 7, ruleId: 'es', ruleName: 'Spanish', assignment: { kind: 'coordinator', coordinatorId: 's2' } });
    expect(decision.explanation.rulesEvaluated).toBe(1);
  });

  it('falls back to the default rule when nothing matches', () => {
    const decision = routeMessage(rules, routingFacts({ coordinators: staff() }), NOW);
    expect(decision).toMatchObject({ ruleId: 'default', ruleName: 'Default', assignment: { kind: 'coordinator', coordinatorId: 'c1' } });
    expect(decision.explanation.rulesEvaluated).toBe(2);
  });

  it('gives the same decision from a compiled rule set', () => {
    const facts = routingFacts({ patient: { language: 'es' }, coordinators: staff() });
    expect(routeMessage(compileRuleSet(rules), facts, NOW)).toEqual(routeMessage(rules, facts, NOW));
  });
});

describe('sticky assignment', () => {
  const facts = (overrides: Partial<RoutingFacts['patient']> = {}, coordinators = staff()) =>
    routingFacts({ patient: { language: 'es', currentCoordinatorId: 'c1', ...overrides }, coordinators });

  it('keeps the current coordinator when the winning rule does not override, but applies its actions', () => {
    const rules = ruleSet({ rules: [{ id: 'es', name: 'Spanish', conditions: spanish, target: toSpanishTeam, actions: [{ type: 'add_tags', tags: ['es'] }] }] });
    const decision = routeMessage(rules, facts(), NOW);
    expect(decision).toMatchObject({ ruleId: 'es', assignment: { kind: 'coordinator', coordinatorId: 'c1' }, keptCurrent: true, actions: [{ type: 'add_tags', tags: ['es'] }] });
    expect(decision.explanation.resolution[0]).toEqual({ step: 'keep_current', coordinatorId: 'c1', reason: 'rule_does_not_override' });
  });

  it('moves the patient when the rule overrides assignment', () => {
    const rules = ruleSet({ rules: [{ id: 'es', name: 'Spanish', conditions: spanish, target: toSpanishTeam, overrideAssignment: true }] });
    const decision = routeMessage(rules, facts(), NOW);
    expect(decision).toMatchObject({ assignment: { kind: 'coordinator', coordinatorId: 's2' }, keptCurrent: false });
  });

  it('never lets the default rule override', () => {
    expect(routeMessage(ruleSet(), facts({ language: 'en' }), NOW).assignment).toEqual({ kind: 'coordinator', coordinatorId: 'c1' });
  });

  it('keeps a coordinator who is at capacity: the patient is already part of their load', () => {
    const busy = staff().map((c) => (c.id === 'c1' ? { ...c, load: 9, capacity: 5 } : c));
    expect(routeMessage(ruleSet(), facts({}, busy), NOW).assignment).toEqual({ kind: 'coordinator', coordinatorId: 'c1' });
  });

  it('a sticky target without a current coordinator moves on to the immediate fallback', () => {
    const rules = ruleSet({
      rules: [{ id: 'keep', name: 'Keep', conditions: always, target: { kind: 'sticky' }, fallbacks: [{ target: toSpanishTeam, afterMinutes: 0 }] }],
    });
    const decision = routeMessage(rules, facts({ currentCoordinatorId: null }), NOW);
    expect(decision.assignment).toEqual({ kind: 'coordinator', coordinatorId: 's2' });
    expect(decision.explanation.resolution.map((s) => s.step)).toEqual(['no_current_coordinator', 'immediate_fallback', 'pool']);
    expect(decision.fallbacks).toEqual([]);
  });

  it('treats a current coordinator missing from the facts as no coordinator', () => {
    const decision = routeMessage(ruleSet(), facts({ currentCoordinatorId: 'gone' }), NOW);
    expect(decision.assignment).toEqual({ kind: 'coordinator', coordinatorId: 'c1' });
    expect(decision.keptCurrent).toBe(false);
    expect(decision.explanation.resolution[0]).toEqual({ step: 'current_coordinator_unknown', coordinatorId: 'gone' });
  });
});

describe('away and out-of-office coordinators', () => {
  const withCurrent = (c1: Partial<ReturnType<typeof coordinator>>, extra: ReturnType<typeof coordinator>[] = []) =>
    routingFacts({ patient: { currentCoordinatorId: 'c1' }, coordinators: [...staff().map((c) => (c.id === 'c1' ? { ...c, ...c1 } : c)), ...extra] });

  it('follow the coordinator’s fallback and return when back if configured', () => {
    const facts = withCurrent({ status: 'away', fallbackTarget: { kind: 'coordinator', coordinatorId: 'c2' }, returnWhenBack: true });
    const decision = routeMessage(ruleSet(), facts, NOW);
    expect(decision).toMatchObject({ assignment: { kind: 'coordinator', coordinatorId: 'c2' }, returnWhenBack: true, returnToCoordinatorId: 'c1', keptCurrent: false });
    expect(decision.explanation.resolution).toEqual([
      { step: 'keep_current', coordinatorId: 'c1', reason: 'rule_does_not_override' },
      { step: 'coordinator', coordinatorId: 'c1', outcome: 'away' },
      { step: 'away_fallback', fromCoordinatorId: 'c1', target: { kind: 'coordinator', coordinatorId: 'c2' }, returnWhenBack: true },
      { step: 'coordinator', coordinatorId: 'c2', outcome: 'assigned' },
    ]);
  });

  it('can fall back to a team, for good when returnWhenBack is off', () => {
    const facts = withCurrent({ status: 'out_of_office', fallbackTarget: toSpanishTeam });
    const decision = routeMessage(ruleSet(), facts, NOW);
    expect(decision).toMatchObject({ assignment: { kind: 'coordinator', coordinatorId: 's2' }, returnWhenBack: false, returnToCoordinatorId: null });
  });

  it('queue in the covering team when the fallback team has nobody free', () => {
    const facts = withCurrent({ status: 'away', fallbackTarget: { kind: 'team', teamId: 'night', strategy: 'round_robin' }, returnWhenBack: true });
    const decision = routeMessage(ruleSet(), facts, NOW);
    expect(decision).toMatchObject({ assignment: { kind: 'queue', teamId: 'night' }, returnWhenBack: true, returnToCoordinatorId: 'c1' });
  });

  it('queue when there is no fallback, and stop at cycles', () => {
    expect(routeMessage(ruleSet(), withCurrent({ status: 'away' }), NOW).assignment).toEqual({ kind: 'queue', teamId: 'intake' });
    const cycle = withCurrent({ status: 'away', fallbackTarget: { kind: 'coordinator', coordinatorId: 'x' } }, [
      coordinator('x', { status: 'away', fallbackTarget: { kind: 'coordinator', coordinatorId: 'c1' } }),
    ]);
    const decision = routeMessage(ruleSet(), cycle, NOW);
    expect(decision.assignment).toEqual({ kind: 'queue', teamId: 'intake' });
    expect(decision.explanation.resolution.filter((s) => s.step === 'away_fallback')).toHaveLength(3);
  });

  it('apply to a rule that names an away coordinator directly', () => {
    const rules = ruleSet({ rules: [{ id: 'vip', name: 'VIP', conditions: always, target: { kind: 'coordinator', coordinatorId: 'c1' } }] });
    const facts = routingFacts({ coordinators: staff().map((c) => (c.id === 'c1' ? { ...c, status: 'away' as const, fallbackTarget: { kind: 'coordinator' as const, coordinatorId: 's1' } } : c)) });
    expect(routeMessage(rules, facts, NOW).assignment).toEqual({ kind: 'coordinator', coordinatorId: 's1' });
  });
});

describe('capacity, fallbacks and queues', () => {
  const fallbackRules = (extra: Partial<RuleSetInput['rules'][number]> = {}) =>
    ruleSet({
      rules: [
        {
          id: 'direct',
          name: 'Direct',
          conditions: always,
          target: { kind: 'coordinator', coordinatorId: 'c1' },
          fallbacks: [
            { target: { kind: 'team', teamId: 'spanish', strategy: 'round_robin', requiredSkills: ['fr'] }, afterMinutes: 0 },
            { target: { kind: 'team', teamId: 'intake', strategy: 'least_loaded' }, afterMinutes: 15 },
            { target: { kind: 'coordinator', coordinatorId: 's1' }, afterMinutes: 30 },
          ],
          ...extra,
        },
      ],
    });

  it('assigns a named coordinator with room and leaves the timed fallbacks for the timer', () => {
    const decision = routeMessage(fallbackRules(), routingFacts({ coordinators: staff() }), NOW);
    expect(decision.assignment).toEqual({ kind: 'coordinator', coordinatorId: 'c1' });
    // The zero-minute alternative only stands in when c1 can't take the message at once.
    expect(decision.fallbacks.map((f) => f.afterMinutes)).toEqual([15, 30]);
  });

  it('does not give a new patient to a coordinator at capacity; tries zero-minute fallbacks, then queues', () => {
    const full = staff().map((c) => (c.id === 'c1' ? { ...c, load: 5 } : c));
    const decision = routeMessage(fallbackRules(), routingFacts({ coordinators: full }), NOW);
    expect(decision.assignment).toEqual({ kind: 'queue', teamId: 'spanish' });
    expect(decision.fallbacks.map((f) => f.afterMinutes)).toEqual([15, 30]);
    expect(decision.explanation.resolution.map((s) => s.step)).toEqual(['coordinator', 'immediate_fallback', 'pool', 'queue']);
  });

  it('queues in the rule’s queueTeamId when set', () => {
    const full = staff().map((c) => (c.id === 'c1' ? { ...c, load: 5 } : c));
    const decision = routeMessage(fallbackRules({ queueTeamId: 'triage' }), routingFacts({ coordinators: full }), NOW);
    expect(decision.assignment).toEqual({ kind: 'queue', teamId: 'triage' });
  });

  it('queues in the default queue when the rule names no team', () => {
    const rules = ruleSet({ rules: [{ id: 'd', name: 'D', conditions: always, target: { kind: 'coordinator', coordinatorId: 'ghost' } }] });
    const decision = routeMessage(rules, routingFacts({ coordinators: staff() }), NOW);
    expect(decision.assignment).toEqual({ kind: 'queue', teamId: 'intake' });
    expect(decision.explanation.resolution[0]).toEqual({ step: 'coordinator', coordinatorId: 'ghost', outcome: 'unknown' });
  });

  it('escalates along the chain, leaving out whoever let it time out', () => {
    const facts = routingFacts({ coordinators: staff() });
    const first = routeMessage(fallbackRules({ actions: [{ type: 'set_priority', priority: 'high' }] }), facts, NOW);
    const second = escalateDecision(first, facts);
    // After 15 minutes unanswered: team intake, without c1.
    expect(second).toMatchObject({ ruleId: 'direct', assignment: { kind: 'coordinator', coordinatorId: 'c2' }, actions: [] });
    expect(second?.explanation.resolution[0]).toMatchObject({ step: 'escalate', fromCoordinatorId: 'c1' });
    expect(second?.fallbacks.map((f) => f.afterMinutes)).toEqual([30]);
    const third = escalateDecision(second!, facts);
    expect(third).toMatchObject({ assignment: { kind: 'coordinator', coordinatorId: 's1' }, fallbacks: [] });
    expect(escalateDecision(third!, facts)).toBeNull();
  });

  it('escalation to a team nobody can take queues in that team', () => {
    const rules = ruleSet({
      rules: [{ id: 'r', name: 'R', conditions: always, target: { kind: 'coordinator', coordinatorId: 'c1' }, fallbacks: [{ target: { kind: 'team', teamId: 'night', strategy: 'round_robin' }, afterMinutes: 10 }] }],
    });
    const facts = routingFacts({ coordinators: staff() });
    expect(escalateDecision(routeMessage(rules, facts, NOW), facts)?.assignment).toEqual({ kind: 'queue', teamId: 'night' });
  });
});

describe('actions', () => {
  const rules = oneRule(always);
  const withReply = ruleSet({
    rules: [
      {
        id: 'r',
        name: 'R',
        conditions: always,
        target: { kind: 'sticky' },
        actions: [
          { type: 'auto_reply', text: 'We will get back to you. In an emergency call 911.', minIntervalMinutes: 60 },
          { type: 'raise_alert', severity: 'warning', message: 'after hours' },
        ],
      },
    ],
  });
  const at = (lastAutoReplyAt: string | null) => routeMessage(withReply, routingFacts({ conversation: { lastAutoReplyAt } }), NOW);

  it('sends an auto-reply at most once per interval per conversation', () => {
    expect(at(null).actions.map((a) => a.type)).toEqual(['auto_reply', 'raise_alert']);
    const throttled = at('2026-03-04T17:30:00Z');
    expect(throttled.actions.map((a) => a.type)).toEqual(['raise_alert']);
    expect(throttled.explanation.suppressedActions).toEqual([
      { action: expect.objectContaining({ type: 'auto_reply' }), reason: 'auto_reply_interval', lastAutoReplyAt: '2026-03-04T17:30:00.000Z' },
    ]);
    expect(at('2026-03-04T17:00:00Z').actions.map((a) => a.type)).toEqual(['auto_reply', 'raise_alert']);
  });

  it('passes other actions through unchanged', () => {
    expect(routeMessage(rules, routingFacts(), NOW).actions).toEqual([]);
  });
});

describe('after-hours routing end to end', () => {
  const rules = ruleSet({
    teams: [{ id: 'intake', timeZone: 'America/New_York', weeklyHours: NINE_TO_FIVE, holidays: ['2026-12-25'] }],
    rules: [
      {
        id: 'after-hours',
        name: 'After hours',
        conditions: { not: { fact: 'time', op: 'within_hours', value: { team: 'intake' } } },
        target: { kind: 'team', teamId: 'on-call', strategy: 'round_robin' },
        actions: [{ type: 'auto_reply', text: 'Closed now. Call 911 in an emergency.', minIntervalMinutes: 240 }],
      },
    ],
  });
  const facts = routingFacts({ coordinators: [...staff(), coordinator('n1', { teamIds: ['on-call'] })] });

  it('routes to on-call with an auto-reply outside hours and on holidays, to intake inside', () => {
    expect(routeMessage(rules, facts, new Date('2026-03-04T18:00:00Z'))).toMatchObject({ ruleId: 'default', actions: [] });
    const night = routeMessage(rules, facts, new Date('2026-03-05T03:00:00Z'));
    expect(night).toMatchObject({ ruleId: 'after-hours', assignment: { coordinatorId: 'n1' }, actions: [{ type: 'auto_reply' }] });
    expect(night.explanation.conditions).toEqual([
      {
        ruleId: 'after-hours',
        path: 'conditions.not',
        fact: 'time',
        op: 'within_hours',
        value: { team: 'intake' },
        actual: { team: 'intake', timeZone: 'America/New_York', localTime: '2026-03-04 wed 22:00', holiday: false },
        result: false,
      },
    ]);
    expect(routeMessage(rules, facts, new Date('2026-12-25T17:00:00Z')).ruleId).toBe('after-hours');
  });
});

describe('explanation', () => {
  const rules = ruleSet({
    rules: [
      { id: 'urgent', name: 'Urgent', conditions: { fact: 'message.text', op: 'matches', value: 'chest pain|can.t breathe' }, target: { kind: 'team', teamId: 'triage', strategy: 'round_robin' }, overrideAssignment: true },
      {
        id: 'es',
        name: 'Spanish',
        conditions: { all: [{ any: [spanish, { fact: 'message.text', op: 'contains', value: 'hola' }] }, { fact: 'patient.riskTier', op: 'gte', value: 2 }] },
        target: toSpanishTeam,
      },
    ],
  });

  it('records the matched rule’s evaluated conditions with the values seen, skipping short-circuited ones', () => {
    const decision = routeMessage(rules, routingFacts({ patient: { language: 'es', riskTier: 3 }, coordinators: staff() }), NOW);
    expect(decision.explanation.conditions).toEqual([
      { ruleId: 'es', path: 'conditions.all[0].any[0]', fact: 'patient.language', op: 'eq', value: 'es', actual: 'es', result: true },
      { ruleId: 'es', path: 'conditions.all[1]', fact: 'patient.riskTier', op: 'gte', value: 2, actual: 3, result: true },
    ]);
    expect(decision.explanation.resolution).toContainEqual({
      step: 'pool',
      teamId: 'spanish',
      strategy: 'least_loaded',
      requiredSkills: [],
      members: 2,
      eligible: 2,
      excluded: { unavailable: 0, atCapacity: 0, missingSkills: 0 },
      chosen: 's2',
    });
  });

  it('traces every rule tested when asked, clipping long text', () => {
    const text = `hola ${'x'.repeat(500)}`;
    const decision = routeMessage(rules, routingFacts({ message: { text }, patient: { riskTier: 1 }, coordinators: staff() }), NOW, { explain: 'all' });
    expect(decision.ruleId).toBe('default');
    expect(decision.explanation.conditions.map((c) => [c.ruleId, c.path, c.result])).toEqual([
      ['urgent', 'conditions', false],
      ['es', 'conditions.all[0].any[0]', false],
      ['es', 'conditions.all[0].any[1]', true],
      ['es', 'conditions.all[1]', false],
    ]);
    expect(String(decision.explanation.conditions[0]?.actual)).toHaveLength(201);
  });

  it('reads as a sentence for the timeline', () => {
    const decision = routeMessage(rules, routingFacts({ patient: { language: 'es', riskTier: 3 }, coordinators: staff() }), NOW);
    expect(describeDecision(decision)).toBe(
      'rule "Spanish" (es) → coordinator s2. Because patient.language eq "es" was true ("es"); patient.riskTier gte 2 was true (3).' +
        ' Team spanish (least loaded): 2 of 2 eligible (0 unavailable, 0 at capacity, 0 missing skills), chose s2.',
    );
    const queued = routeMessage(rules, routingFacts({ message: { text: 'CHEST PAIN' }, coordinators: staff() }), NOW);
    expect(describeDecision(queued)).toContain('→ the triage queue.');
  });
});

describe('facts as JSON', () => {
  it('parse with RoutingFactsSchema (as a dry-run request would send them) and route like the originals', () => {
    const facts = routingFacts({
      patient: { language: 'es', currentCoordinatorId: 'c1' },
      coordinators: staff().map((c) => ({ ...c, lastAssignedAt: '2026-03-04T10:00:00.000Z', fallbackTarget: toSpanishTeam })),
      conversation: { lastAutoReplyAt: '2026-03-04T17:00:00Z' },
    });
    const parsed = RoutingFactsSchema.parse(JSON.parse(JSON.stringify(facts)));
    const rules = ruleSet({ rules: [{ id: 'es', name: 'Spanish', conditions: spanish, target: toSpanishTeam, overrideAssignment: true }] });
    expect(routeMessage(rules, parsed, NOW)).toEqual(routeMessage(rules, facts, NOW));
    expect(RoutingFactsSchema.safeParse({ ...facts, coordinators: [{ id: 'c1', status: 'busy' }] }).success).toBe(false);
  });
});

describe('robustness', () => {
  it('still decides when the facts are malformed at run time', () => {
    const broken = [
      { patient: {}, message: {}, coordinators: undefined },
      { patient: { tags: 'not-a-list', attributes: 5, currentCoordinatorId: 'c1' }, message: { text: 42 }, coordinators: [{ id: 'c1' }] },
      { patient: null, message: null, coordinators: [] },
    ] as unknown as RoutingFacts[];
    const rules = ruleSet({
      rules: [
        {
          id: 'r',
          name: 'R',
          conditions: {
            any: [
              { fact: 'patient.tags', op: 'contains', value: 'x' },
              { fact: 'message.text', op: 'matches', value: 'x' },
              { fact: 'coordinator.skills', op: 'in', value: ['x'] },
              { fact: 'patient.attributes.a', op: 'exists' },
            ],
          },
          target: { kind: 'sticky' },
        },
      ],
    });
    for (const facts of broken) {
      const decision = routeMessage(rules, facts, NOW);
      expect(decision.explanation.resolution.some((s) => s.step === 'error')).toBe(false);
      expect(['coordinator', 'queue']).toContain(decision.assignment.kind);
    }
  });
});
