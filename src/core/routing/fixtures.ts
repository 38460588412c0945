/** Builders for routing tests and the bench: small valid facts and rule sets with overridable parts. */
import type { CoordinatorFact, RoutingFacts } from './facts.ts';
import { RuleSetSchema, type Condition, type RuleSet, type RuleSetInput } from './rules.ts';

export function coordinator(id: string, overrides: Partial<CoordinatorFact> = {}): CoordinatorFact {
  return {
    id,
    status: 'available',
    load: 0,
    capacity: 5,
    skills: [],
    languages: ['en'],
    teamIds: ['intake'],
    lastAssignedAt: null,
    ...overrides,
  };
}

export interface FactsOverrides {
  patient?: Partial<RoutingFacts['patient']>;
  message?: Partial<RoutingFacts['message']>;
  coordinators?: CoordinatorFact[];
  conversation?: RoutingFacts['conversation'];
}

export function routingFacts(overrides: FactsOverrides = {}): RoutingFacts {
  return {
    patient: { id: 'p1', program: 'diabetes', language: 'en', state: 'CA', timeZone: 'America/Los_Angeles', riskTier: 2, tags: [], attributes: {}, currentCoordinatorId: null, ...overrides.patient },
    message: { text: 'Hello, I have a question', channel: 'sms', hasMedia: false, ...overrides.message },
    coordinators: overrides.coordinators ?? [coordinator('c1'), coordinator('c2')],
    conversation: overrides.conversation ?? {},
  };
}

/** Parses (filling defaults) without reference checks; the validator has its own tests. */
export function ruleSet(input: Partial<RuleSetInput> = {}): RuleSet {
  return RuleSetSchema.parse({
    rules: [],
    defaultRule: { target: { kind: 'team', teamId: 'intake', strategy: 'least_loaded' }, queueTeamId: 'intake' },
    ...input,
  });
}

/** A rule set whose only rule `r` has `conditions` and targets c1; the default targets team intake. */
export function oneRule(conditions: Condition, extra: Partial<RuleSetInput> = {}): RuleSet {
  return ruleSet({
    rules: [{ id: 'r', name: 'R', conditions, target: { kind: 'coordinator', coordinatorId: 'c1' } }],
    ...extra,
  });
}

export const NINE_TO_FIVE = {
  mon: [{ start: '09:00', end: '17:00' }],
  tue: [{ start: '09:00', end: '17:00' }],
  wed: [{ start: '09:00', end: '17:00' }],
  thu: [{ start: '09:00', end: '17:00' }],
  fri: [{ start: '09:00', end: '17:00' }],
};
