import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isWithinBusinessHours, TeamScheduleSchema } from './business-hours.ts';
import { compileRuleSet, escalateDecision, routeMessage, type RoutingDecision } from './evaluate.ts';
import type { CoordinatorFact, RoutingFacts } from './facts.ts';
import { NINE_TO_FIVE } from './fixtures.ts';
import { validateRuleSet } from './validate.ts';
import type { Condition, LeafCondition, RuleSet, Target } from './rules.ts';

const COORDINATOR_IDS = ['c0', 'c1', 'c2', 'c3', 'c4', 'c5'];
const TEAM_IDS = ['t0', 't1', 't2'];
const LANGUAGES = ['en', 'es', 'fr'];
const SKILLS = ['insulin', 'peds', 'es'];
const WORDS = ['refill', 'PAIN', 'hola', 'appointment', 'thanks', 'chest'];
const PATTERNS = ['^re', 'pain|chest', '\\bhola\\b', 'app.*ment$', '[0-9]+'];
const SCHEDULE = TeamScheduleSchema.parse({ timeZone: 'America/New_York', weeklyHours: NINE_TO_FIVE, holidays: ['2026-07-03'] });
const RUNS = { numRuns: 300 };

// ---- generators ---------------------------------------------------------------------------------------------

const leafArb: fc.Arbitrary<LeafCondition> = fc.oneof(
  fc.record({ fact: fc.constant('patient.program'), op: fc.constantFrom('eq' as const, 'neq' as const), value: fc.constantFrom('diabetes', 'CARDIO', 'onc') }),
  fc.record({ fact: fc.constant('patient.language'), op: fc.constantFrom('in' as const, 'not_in' as const), value: fc.subarray(LANGUAGES, { minLength: 1 }) }),
  fc.record({
    fact: fc.constant('message.text'),
    op: fc.constantFrom('contains' as const, 'not_contains' as const, 'starts_with' as const),
    value: fc.constantFrom(...WORDS),
    caseSensitive: fc.boolean(),
  }),
  fc.record({ fact: fc.constant('message.text'), op: fc.constant('matches' as const), value: fc.constantFrom(...PATTERNS) }),
  fc.record({ fact: fc.constant('patient.riskTier'), op: fc.constantFrom('gt' as const, 'gte' as const, 'lt' as const, 'lte' as const), value: fc.integer({ min: 0, max: 4 }) }),
  fc.record({ fact: fc.constant('patient.tags'), op: fc.constant('contains' as const), value: fc.constantFrom('vip', 'post-op') }),
  fc.record({ fact: fc.constant('message.hasMedia'), op: fc.constant('eq' as const), value: fc.boolean() }),
  fc.record({ fact: fc.constant('coordinator.status'), op: fc.constant('eq' as const), value: fc.constantFrom('available', 'away') }),
  fc.record({ fact: fc.constant('coordinator.load'), op: fc.constant('gte' as const), value: fc.integer({ min: 0, max: 5 }) }),
  fc.record({ fact: fc.constant('patient.attributes.plan'), op: fc.constant('exists' as const) }),
  fc.record({ fact: fc.constant('time'), op: fc.constant('within_hours' as const), value: fc.constant({ team: 't0' }) }),
);

const conditionArb: fc.Arbitrary<Condition> = fc.letrec<{ node: Condition }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leafArb,
    fc.record({ all: fc.array(tie('node'), { maxLength: 3 }) }),
    fc.record({ any: fc.array(tie('node'), { maxLength: 3 }) }),
    fc.record({ not: tie('node') }),
  ),
})).node;

const targetArb: fc.Arbitrary<Target> = fc.oneof(
  fc.record({ kind: fc.constant('coordinator' as const), coordinatorId: fc.constantFrom(...COORDINATOR_IDS) }),
  fc.record(
    {
      kind: fc.constant('team' as const),
      teamId: fc.constantFrom(...TEAM_IDS),
      strategy: fc.constantFrom('round_robin' as const, 'least_loaded' as const, 'longest_idle' as const),
      requiredSkills: fc.subarray(SKILLS),
    },
    { requiredKeys: ['kind', 'teamId', 'strategy'] },
  ),
  fc.constant({ kind: 'sticky' as const }),
);

const fallbacksArb = fc.array(fc.record({ target: targetArb, afterMinutes: fc.constantFrom(0, 0, 5, 30) }), { maxLength: 3 });

const ruleSetArb: fc.Arbitrary<RuleSet> = fc
  .record({
    rules: fc.array(
      fc.record({
        enabled: fc.boolean(),
        conditions: conditionArb,
        target: targetArb,
        overrideAssignment: fc.boolean(),
        fallbacks: fallbacksArb,
        queueTeamId: fc.option(fc.constantFrom(...TEAM_IDS), { nil: undefined }),
        actions: fc.subarray([
          { type: 'set_priority' as const, priority: 'high' as const },
          { type: 'auto_reply' as const, text: 'We are closed; call 911 in an emergency.', minIntervalMinutes: 60 },
          { type: 'raise_alert' as const, severity: 'critical' as const, message: 'urgent' },
        ]),
      }),
      { maxLength: 8 },
    ),
    defaultTarget: targetArb,
    defaultFallbacks: fallbacksArb,
    queueTeamId: fc.constantFrom(...TEAM_IDS),
  })
  .map(({ rules, defaultTarget, defaultFallbacks, queueTeamId }) => {
    const input = {
      teams: [{ id: 't0', ...SCHEDULE }],
      rules: rules.map((r, i) => ({ id: `r${i}`, name: `Rule ${i}`, ...r })),
      defaultRule: { target: defaultTarget, fallbacks: defaultFallbacks, queueTeamId },
    };
    // Every generated rule set must be valid; this doubles as a property of the validator.
    const result = validateRuleSet(input, { coordinatorIds: COORDINATOR_IDS, teamIds: TEAM_IDS });
    if (!result.ok) throw new Error(`generator produced an invalid rule set: ${JSON.stringify(result.errors)}`);
    return result.ruleSet;
  });

const instantArb = fc.option(
  fc.integer({ min: Date.parse('2026-01-01T00:00:00Z'), max: Date.parse('2026-12-31T00:00:00Z') }).map((ms) => new Date(ms).toISOString()),
  { nil: null },
);

const coordinatorArb = (id: string): fc.Arbitrary<CoordinatorFact> =>
  fc.record({
    id: fc.constant(id),
    status: fc.constantFrom('available' as const, 'available' as const, 'away' as const, 'out_of_office' as const),
    load: fc.integer({ min: 0, max: 6 }),
    capacity: fc.oneof(fc.integer({ min: 0, max: 6 }), fc.constant(Infinity)),
    skills: fc.subarray(SKILLS),
    languages: fc.subarray(LANGUAGES),
    teamIds: fc.subarray(TEAM_IDS),
    lastAssignedAt: instantArb,
    idleSince: instantArb,
    fallbackTarget: fc.option(
      fc.oneof(
        fc.record({ kind: fc.constant('coordinator' as const), coordinatorId: fc.constantFrom(...COORDINATOR_IDS, 'ghost') }),
        fc.record({ kind: fc.constant('team' as const), teamId: fc.constantFrom(...TEAM_IDS), strategy: fc.constant('least_loaded' as const) }),
      ),
      { nil: null },
    ),
    returnWhenBack: fc.boolean(),
  });

const factsArb: fc.Arbitrary<RoutingFacts> = fc.record({
  patient: fc.record({
    id: fc.constant('p1'),
    program: fc.constantFrom('diabetes', 'cardio', 'onc', null),
    language: fc.constantFrom(...LANGUAGES, null),
    riskTier: fc.option(fc.integer({ min: 0, max: 4 }), { nil: null }),
    tags: fc.subarray(['vip', 'post-op', 'new']),
    attributes: fc.option(fc.record({ plan: fc.constantFrom('gold', '') }), { nil: undefined }).map((a) => a ?? {}),
    currentCoordinatorId: fc.constantFrom(null, 'ghost', ...COORDINATOR_IDS),
  }),
  message: fc.record({
    text: fc.array(fc.constantFrom(...WORDS, '42', 'and'), { maxLength: 5 }).map((w) => w.join(' ')),
    channel: fc.constantFrom('sms', 'whatsapp', 'email'),
    hasMedia: fc.boolean(),
  }),
  // Any subset of the coordinators the rules may name, so some named ones are missing at run time.
  coordinators: fc.subarray(COORDINATOR_IDS).chain((ids) => fc.tuple(...ids.map(coordinatorArb))),
  conversation: fc.record({ lastAutoReplyAt: instantArb }),
});

const nowArb = fc.integer({ min: Date.parse('2026-01-01T00:00:00Z'), max: Date.parse('2026-12-31T00:00:00Z') }).map((ms) => new Date(ms));

// ---- an independent, deliberately naive reading of the rules -----------------------------------------------

function holdsRef(c: Condition, facts: RoutingFacts, now: Date): boolean {
  if ('all' in c) return c.all.every((x) => holdsRef(x, facts, now));
  if ('any' in c) return c.any.some((x) => holdsRef(x, facts, now));
  if ('not' in c) return !holdsRef(c.not, facts, now);
  const current = facts.coordinators.find((k) => k.id === facts.patient.currentCoordinatorId);
  const values: Record<string, unknown> = {
    'patient.program': facts.patient.program,
    'patient.language': facts.patient.language,
    'patient.riskTier': facts.patient.riskTier,
    'patient.tags': facts.patient.tags,
    'patient.attributes.plan': facts.patient.attributes?.plan,
    'message.text': facts.message.text,
    'message.hasMedia': facts.message.hasMedia,
    'coordinator.status': current?.status,
    'coordinator.load': current?.load,
  };
  const v = values[c.fact];
  const lower = (x: unknown) => (typeof x === 'string' ? x.toLowerCase() : x);
  switch (c.op) {
    case 'eq':
      return lower(v) === lower(c.value);
    case 'neq':
      return lower(v) !== lower(c.value);
    case 'in':
      return c.value.map(lower).includes(lower(v));
    case 'not_in':
      return !c.value.map(lower).includes(lower(v));
    case 'contains':
    case 'not_contains': {
      const has = Array.isArray(v)
        ? v.includes(c.value)
        : typeof v === 'string' && (c.caseSensitive ? v.includes(c.value) : v.toLowerCase().includes(c.value.toLowerCase()));
      return c.op === 'contains' ? has : !has;
    }
    case 'starts_with':
      return typeof v === 'string' && (c.caseSensitive ? v.startsWith(c.value) : v.toLowerCase().startsWith(c.value.toLowerCase()));
    case 'matches':
      return typeof v === 'string' && new RegExp(c.value, 'i').test(v);
    case 'exists':
      return v !== undefined && v !== null && v !== '' && !(Array.isArray(v) && v.length === 0);
    case 'gt':
      return typeof v === 'number' && v > c.value;
    case 'gte':
      return typeof v === 'number' && v >= c.value;
    case 'lt':
      return typeof v === 'number' && v < c.value;
    case 'lte':
      return typeof v === 'number' && v <= c.value;
    case 'within_hours':
      return isWithinBusinessHours(SCHEDULE, now);
  }
}

const hasRoom = (c: CoordinatorFact) => c.status === 'available' && c.load < c.capacity;

function assertWellFormed(decision: RoutingDecision, facts: RoutingFacts): void {
  expect(decision.explanation.resolution.filter((s) => s.step === 'error')).toEqual([]);
  if (decision.assignment.kind === 'coordinator') {
    const id = decision.assignment.coordinatorId;
    expect(facts.coordinators.some((c) => c.id === id)).toBe(true);
  } else {
    expect(TEAM_IDS).toContain(decision.assignment.teamId);
  }
}

// ---- properties ---------------------------------------------------------------------------------------------

describe('routing properties', () => {
  it('every message gets exactly one decision: the first enabled matching rule (or the default) and a real target', () => {
    fc.assert(
      fc.property(ruleSetArb, factsArb, nowArb, (rules, facts, now) => {
        const decision = routeMessage(rules, facts, now);
        const expected = rules.rules.find((r) => r.enabled && holdsRef(r.conditions, facts, now));
        expect(decision.ruleId).toBe(expected?.id ?? 'default');
        assertWellFormed(decision, facts);
      }),
      RUNS,
    );
  });

  it('a patient stays with an available current coordinator unless the winning rule overrides', () => {
    fc.assert(
      fc.property(ruleSetArb, factsArb, nowArb, (rules, facts, now) => {
        const current = facts.coordinators.find((c) => c.id === facts.patient.currentCoordinatorId);
        fc.pre(current !== undefined && current.status === 'available');
        const decision = routeMessage(rules, facts, now);
        const rule = rules.rules.find((r) => r.id === decision.ruleId);
        const overrides = rule !== undefined && rule.overrideAssignment && rule.target.kind !== 'sticky';
        if (!overrides) expect(decision.assignment).toEqual({ kind: 'coordinator', coordinatorId: current!.id });
        if (decision.assignment.kind !== 'coordinator' || decision.assignment.coordinatorId !== current!.id) expect(overrides).toBe(true);
      }),
      RUNS,
    );
  });

  it('never assigns a new patient above capacity, and a pool only queues when nobody in it has room', () => {
    fc.assert(
      fc.property(ruleSetArb, factsArb, nowArb, (rules, facts, now) => {
        const decision = routeMessage(rules, facts, now);
        const currentId = facts.patient.currentCoordinatorId;
        if (decision.assignment.kind === 'coordinator' && decision.assignment.coordinatorId !== currentId) {
          const chosenId = decision.assignment.coordinatorId;
          const chosen = facts.coordinators.find((c) => c.id === chosenId);
          expect(chosen && hasRoom(chosen)).toBe(true);
        }
        for (const step of decision.explanation.resolution) {
          if (step.step !== 'pool') continue;
          const eligible = facts.coordinators.filter(
            (c) =>
              c.teamIds.includes(step.teamId) &&
              hasRoom(c) &&
              step.requiredSkills.every((s) => [...c.skills, ...c.languages].map((x) => x.toLowerCase()).includes(s)),
          );
          if (step.chosen === null) expect(eligible).toEqual([]);
          else expect(eligible.map((c) => c.id)).toContain(step.chosen);
        }
      }),
      RUNS,
    );
  });

  it('the same facts always give the same decision, whatever the coordinators’ order or the rule set’s copy', () => {
    fc.assert(
      fc.property(ruleSetArb, factsArb, nowArb, fc.integer(), (rules, facts, now, seed) => {
        const decision = routeMessage(rules, facts, now, { explain: 'all' });
        expect(routeMessage(rules, facts, now, { explain: 'all' })).toEqual(decision);
        const shuffled = { ...facts, coordinators: shuffle(facts.coordinators, seed) };
        const copy = JSON.parse(JSON.stringify(rules)) as RuleSet;
        expect(routeMessage(compileRuleSet(copy), shuffled, new Date(now.getTime()), { explain: 'all' })).toEqual(decision);
      }),
      RUNS,
    );
  });

  it('escalation always lands somewhere and runs out after the fallbacks', () => {
    fc.assert(
      fc.property(ruleSetArb, factsArb, nowArb, (rules, facts, now) => {
        let decision: RoutingDecision | null = routeMessage(rules, facts, now);
        let steps = 0;
        while (decision) {
          assertWellFormed(decision, facts);
          decision = escalateDecision(decision, facts);
          steps++;
          expect(steps).toBeLessThanOrEqual(4);
        }
      }),
      RUNS,
    );
  });
});

function shuffle<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let s = seed >>> 0 || 1;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) >>> 0;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
