import { describe, expect, it } from 'vitest';
import { coordinator, oneRule, routingFacts, type FactsOverrides } from './fixtures.ts';
import { routeMessage } from './evaluate.ts';
import type { Condition } from './rules.ts';

const NOW = new Date('2026-03-04T18:00:00Z');

/** Whether the single rule `r` wins for these facts, i.e. whether `condition` holds. */
function holds(condition: Condition, overrides: FactsOverrides = {}): boolean {
  return routeMessage(oneRule(condition), routingFacts(overrides), NOW).ruleId === 'r';
}

describe('eq / neq', () => {
  it.each([
    [{ fact: 'patient.program', op: 'eq', value: 'diabetes' }, true],
    [{ fact: 'patient.program', op: 'eq', value: 'DIABETES' }, true],
    [{ fact: 'patient.program', op: 'eq', value: 'DIABETES', caseSensitive: true }, false],
    [{ fact: 'patient.program', op: 'eq', value: 'diab' }, false],
    [{ fact: 'patient.riskTier', op: 'eq', value: 2 }, true],
    [{ fact: 'patient.riskTier', op: 'eq', value: '2' }, false],
    [{ fact: 'message.hasMedia', op: 'eq', value: false }, true],
    [{ fact: 'patient.program', op: 'neq', value: 'cardiology' }, true],
    [{ fact: 'patient.program', op: 'neq', value: 'Diabetes' }, false],
    [{ fact: 'patient.attributes.insurer', op: 'neq', value: 'acme' }, true], // absent is not equal
    [{ fact: 'patient.attributes.insurer', op: 'eq', value: 'acme' }, false],
  ] satisfies Array<[Condition, boolean]>)('%j → %s', (condition, expected) => {
    expect(holds(condition)).toBe(expected);
  });
});

describe('in / not_in', () => {
  it.each([
    [{ fact: 'patient.state', op: 'in', value: ['ny', 'ca'] }, true],
    [{ fact: 'patient.state', op: 'in', value: ['NY', 'TX'] }, false],
    [{ fact: 'patient.riskTier', op: 'in', value: [1, 2] }, true],
    [{ fact: 'patient.tags', op: 'in', value: ['vip', 'post-op'] }, true], // a list shares an element
    [{ fact: 'patient.tags', op: 'in', value: ['pediatric'] }, false],
    [{ fact: 'patient.state', op: 'not_in', value: ['NY', 'TX'] }, true],
    [{ fact: 'patient.state', op: 'not_in', value: ['CA'] }, false],
    [{ fact: 'patient.attributes.plan', op: 'not_in', value: ['gold'] }, true],
  ] satisfies Array<[Condition, boolean]>)('%j → %s', (condition, expected) => {
    expect(holds(condition, { patient: { tags: ['Post-Op', 'diabetic'] } })).toBe(expected);
  });
});

describe('contains / not_contains / starts_with', () => {
  const text = { message: { text: 'My CHEST hurts since this morning' }, patient: { tags: ['Post-Op'] } };
  it.each([
    [{ fact: 'message.text', op: 'contains', value: 'chest' }, true],
    [{ fact: 'message.text', op: 'contains', value: 'chest', caseSensitive: true }, false],
    [{ fact: 'message.text', op: 'contains', value: 'fever' }, false],
    [{ fact: 'patient.tags', op: 'contains', value: 'post-op' }, true], // element, not substring
    [{ fact: 'patient.tags', op: 'contains', value: 'post' }, false],
    [{ fact: 'message.text', op: 'not_contains', value: 'fever' }, true],
    [{ fact: 'message.text', op: 'not_contains', value: 'Hurts' }, false],
    [{ fact: 'message.text', op: 'starts_with', value: 'my chest' }, true],
    [{ fact: 'message.text', op: 'starts_with', value: 'chest' }, false],
    [{ fact: 'patient.tags', op: 'starts_with', value: 'post' }, true],
    [{ fact: 'patient.attributes.note', op: 'starts_with', value: 'x' }, false],
  ] satisfies Array<[Condition, boolean]>)('%j → %s', (condition, expected) => {
    expect(holds(condition, text)).toBe(expected);
  });
});

describe('matches', () => {
  const text = { message: { text: 'Need a REFILL of metformin 500mg' } };
  it.each([
    [{ fact: 'message.text', op: 'matches', value: '\\brefill\\b' }, true],
    [{ fact: 'message.text', op: 'matches', value: '\\brefill\\b', caseSensitive: true }, false],
    [{ fact: 'message.text', op: 'matches', value: '\\d+\\s?mg$' }, true],
    [{ fact: 'message.text', op: 'matches', value: '^refill' }, false],
    [{ fact: 'patient.tags', op: 'matches', value: '^dia' }, true],
    [{ fact: 'patient.attributes.missing', op: 'matches', value: '.*' }, false],
  ] satisfies Array<[Condition, boolean]>)('%j → %s', (condition, expected) => {
    expect(holds(condition, { ...text, patient: { tags: ['diabetic'] } })).toBe(expected);
  });

  it.each([
    [{ fact: 'message.text', op: 'matches', value: 'métformine' }, { text: 'MÉTFORMINE please' }, true],
    [{ fact: 'message.text', op: 'matches', value: '\\u0041\\d' }, { text: 'a1' }, true],
    [{ fact: 'message.text', op: 'matches', value: '(?<dose>\\d+)mg' }, { text: '20mg' }, true],
    [{ fact: 'message.text', op: 'matches', value: 'a/b' }, { text: 'A/B' }, true],
    [{ fact: 'message.text', op: 'matches', value: '^line two$' }, { text: 'line one\nline two' }, false],
    [{ fact: 'message.text', op: 'matches', value: '(?m)^line two$' }, { text: 'line one\nline two' }, true],
  ] satisfies Array<[Condition, { text: string }, boolean]>)('%j on %j → %s (JavaScript spellings and anchors)', (condition, message, expected) => {
    expect(holds(condition, { message })).toBe(expected);
  });

  it('runs nested quantifiers in linear time: ^(a|a)*$ against 100k characters', () => {
    // On a backtracking engine this is 2^100000 steps; the test would never finish.
    const condition: Condition = { fact: 'message.text', op: 'matches', value: '^(a|a)*$' };
    expect(holds(condition, { message: { text: `${'a'.repeat(100_000)}!` } })).toBe(false);
    expect(holds(condition, { message: { text: 'a'.repeat(100_000) } })).toBe(true);
  });

  it('never matches with a pattern that bypassed validation', () => {
    const rules = oneRule({ fact: 'message.text', op: 'matches', value: 'a' });
    // Built as plain data, the way a rule set read back from storage without validation would arrive.
    rules.rules[0]!.conditions = { fact: 'message.text', op: 'matches', value: '(a)\\1' };
    const decision = routeMessage(rules, routingFacts({ message: { text: 'aa' } }), NOW);
    expect(decision.ruleId).toBe('default');
  });
});

describe('exists', () => {
  it.each([
    ['patient.program', {}, true],
    ['patient.attributes.insurer', { patient: { attributes: { insurer: 'acme' } } }, true],
    ['patient.attributes.insurer', {}, false],
    ['patient.attributes.insurer', { patient: { attributes: { insurer: null } } }, false],
    ['patient.attributes.insurer', { patient: { attributes: { insurer: '' } } }, false],
    ['patient.tags', { patient: { tags: [] } }, false],
    ['patient.tags', { patient: { tags: ['x'] } }, true],
    ['patient.currentCoordinatorId', {}, false],
    // Own properties only: prototype members are not attributes.
    ['patient.attributes.constructor', {}, false],
    ['message.hasMedia', {}, true], // false is a value
  ] satisfies Array<[string, FactsOverrides, boolean]>)('%s with %j → %s', (fact, overrides, expected) => {
    expect(holds({ fact, op: 'exists' }, overrides)).toBe(expected);
  });
});

describe('gt / gte / lt / lte', () => {
  it.each([
    ['gt', 2, false],
    ['gt', 1, true],
    ['gte', 2, true],
    ['gte', 3, false],
    ['lt', 3, true],
    ['lt', 2, false],
    ['lte', 2, true],
    ['lte', 1.5, false],
  ] as const)('riskTier 2 %s %d → %s', (op, value, expected) => {
    expect(holds({ fact: 'patient.riskTier', op, value })).toBe(expected);
  });

  it('is false for a missing or non-numeric fact', () => {
    expect(holds({ fact: 'patient.riskTier', op: 'gt', value: 0 }, { patient: { riskTier: 'high' } })).toBe(false);
    expect(holds({ fact: 'patient.riskTier', op: 'lt', value: 10 }, { patient: { riskTier: null } })).toBe(false);
    expect(holds({ fact: 'patient.attributes.age', op: 'gte', value: 65 }, { patient: { attributes: { age: 70 } } })).toBe(true);
  });
});

describe('within_hours', () => {
  const teams = [{ id: 'intake', timeZone: 'America/New_York', weeklyHours: { wed: [{ start: '09:00', end: '17:00' }] } }];
  const at = (iso: string) => routeMessage(oneRule({ fact: 'time', op: 'within_hours', value: { team: 'intake' } }, { teams }), routingFacts(), new Date(iso));
  it('holds inside the team’s hours in its own zone', () => {
    expect(at('2026-03-04T14:00:00Z').ruleId).toBe('r'); // 09:00 EST, Wednesday
    expect(at('2026-03-04T13:59:00Z').ruleId).toBe('default'); // 08:59
    expect(at('2026-03-04T21:59:00Z').ruleId).toBe('r'); // 16:59
    expect(at('2026-03-04T22:00:00Z').ruleId).toBe('default'); // 17:00, end is exclusive
  });
  it('is false for a team without hours in the rule set', () => {
    const decision = routeMessage(oneRule({ fact: 'time', op: 'within_hours', value: { team: 'nowhere' } }), routingFacts(), NOW);
    expect(decision.ruleId).toBe('default');
  });
});

describe('coordinator facts describe the current coordinator', () => {
  const coordinators = [coordinator('c1', { status: 'away', load: 7, skills: ['Insulin'] }), coordinator('c2')];
  it.each([
    [{ fact: 'coordinator.status', op: 'eq', value: 'away' }, true],
    [{ fact: 'coordinator.load', op: 'gte', value: 7 }, true],
    [{ fact: 'coordinator.skills', op: 'contains', value: 'insulin' }, true],
    [{ fact: 'coordinator.id', op: 'eq', value: 'c1' }, true],
  ] satisfies Array<[Condition, boolean]>)('%j → %s', (condition, expected) => {
    expect(holds(condition, { coordinators, patient: { currentCoordinatorId: 'c1' } })).toBe(expected);
  });
  it('are absent when the patient has no coordinator', () => {
    expect(holds({ fact: 'coordinator.status', op: 'exists' }, { coordinators })).toBe(false);
    expect(holds({ not: { fact: 'coordinator.status', op: 'eq', value: 'away' } }, { coordinators })).toBe(true);
  });
});

describe('groups', () => {
  const yes = { fact: 'patient.program', op: 'eq', value: 'diabetes' } as const;
  const no = { fact: 'patient.program', op: 'eq', value: 'oncology' } as const;
  it.each([
    [{ all: [] }, true],
    [{ any: [] }, false],
    [{ all: [yes, yes, yes, yes] }, true],
    [{ all: [yes, yes, yes, no] }, false],
    [{ any: [no, no, no, yes] }, true],
    [{ any: [no, no] }, false],
    [{ not: no }, true],
    [{ not: { any: [no, { all: [yes, { not: no }] }] } }, false],
  ] satisfies Array<[Condition, boolean]>)('%j → %s', (condition, expected) => {
    expect(holds(condition)).toBe(expected);
  });
});
