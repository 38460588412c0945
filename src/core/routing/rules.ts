/**
 * The routing rule set: plain JSON, validated by zod, stored and versioned by the caller. Everything here is
 * data; `compile.ts` turns it into closures and `evaluate.ts` runs them.
 */
import { z } from 'zod';
import { CHANNELS } from '../types.ts';
import { TeamScheduleSchema } from './business-hours.ts';
import { checkPattern } from './pattern.ts';

export const OPERATORS = [
  'eq',
  'neq',
  'in',
  'not_in',
  'contains',
  'not_contains',
  'starts_with',
  'matches',
  'exists',
  'gt',
  'gte',
  'lt',
  'lte',
  'within_hours',
] as const;
export type Operator = (typeof OPERATORS)[number];

export const POOL_STRATEGIES = ['round_robin', 'least_loaded', 'longest_idle'] as const;
export type PoolStrategy = (typeof POOL_STRATEGIES)[number];

export const COORDINATOR_STATUSES = ['available', 'away', 'out_of_office'] as const;
export type CoordinatorStatus = (typeof COORDINATOR_STATUSES)[number];

export const PRIORITIES = ['low', 'normal', 'high', 'urgent'] as const;
export type Priority = (typeof PRIORITIES)[number];

export const ALERT_SEVERITIES = ['info', 'warning', 'critical'] as const;

/**
 * What a fact holds, which decides the operators it accepts:
 * `list` = array of strings, `scalar` = string or number, `any` = a custom attribute whose type we don't know.
 */
export type FactKind = 'string' | 'number' | 'boolean' | 'scalar' | 'list' | 'time' | 'any';

export interface FactSpec {
  kind: FactKind;
  /** When set, `eq`/`neq`/`in`/`not_in` values must be among these, so a typo fails validation. */
  values?: readonly string[];
}

/**
 * Every fact a condition may name. `coordinator.*` describe the patient's *current* coordinator (absent when the
 * patient has none). Custom patient attributes are `patient.attributes.<name>`.
 */
export const FACTS: Readonly<Record<string, FactSpec>> = {
  'patient.id': { kind: 'string' },
  'patient.program': { kind: 'string' },
  'patient.language': { kind: 'string' },
  'patient.state': { kind: 'string' },
  'patient.timeZone': { kind: 'string' },
  'patient.riskTier': { kind: 'scalar' },
  'patient.tags': { kind: 'list' },
  'patient.currentCoordinatorId': { kind: 'string' },
  'message.text': { kind: 'string' },
  'message.channel': { kind: 'string', values: CHANNELS },
  'message.hasMedia': { kind: 'boolean' },
  'coordinator.id': { kind: 'string' },
  'coordinator.status': { kind: 'string', values: COORDINATOR_STATUSES },
  'coordinator.load': { kind: 'number' },
  'coordinator.capacity': { kind: 'number' },
  'coordinator.skills': { kind: 'list' },
  'coordinator.languages': { kind: 'list' },
  time: { kind: 'time' },
};

export const ATTRIBUTE_PREFIX = 'patient.attributes.';

const STRING_OPS: readonly Operator[] = ['eq', 'neq', 'in', 'not_in', 'contains', 'not_contains', 'starts_with', 'matches', 'exists'];
const NUMBER_OPS: readonly Operator[] = ['eq', 'neq', 'in', 'not_in', 'gt', 'gte', 'lt', 'lte', 'exists'];

export const OPERATORS_BY_KIND: Readonly<Record<FactKind, readonly Operator[]>> = {
  string: STRING_OPS,
  number: NUMBER_OPS,
  scalar: [...new Set([...STRING_OPS, ...NUMBER_OPS])],
  boolean: ['eq', 'neq', 'exists'],
  list: ['contains', 'not_contains', 'in', 'not_in', 'starts_with', 'matches', 'exists'],
  time: ['within_hours'],
  any: OPERATORS.filter((op) => op !== 'within_hours'),
};

// ---- conditions --------------------------------------------------------------------------------------------

export type Scalar = string | number | boolean;

/**
 * One test of one fact. Text comparisons (`eq`, `neq`, `in`, `not_in`, `contains`, `not_contains`, `starts_with`,
 * `matches`) ignore case unless `caseSensitive` is true. On a list fact, `contains` means "has this element",
 * `in` "shares an element with", and `starts_with`/`matches` test each element.
 */
export type LeafCondition =
  | { fact: string; op: 'eq' | 'neq'; value: Scalar; caseSensitive?: boolean }
  | { fact: string; op: 'in' | 'not_in'; value: Scalar[]; caseSensitive?: boolean }
  | { fact: string; op: 'contains' | 'not_contains' | 'starts_with'; value: string; caseSensitive?: boolean }
  | { fact: string; op: 'matches'; value: string; caseSensitive?: boolean }
  | { fact: string; op: 'exists' }
  | { fact: string; op: 'gt' | 'gte' | 'lt' | 'lte'; value: number }
  | { fact: string; op: 'within_hours'; value: { team: string } };

export type Condition = { all: Condition[] } | { any: Condition[] } | { not: Condition } | LeafCondition;

const ScalarSchema = z.union([z.string(), z.number().finite(), z.boolean()]);
const caseSensitive = z.boolean().optional();
const fact = z.string().min(1);

const LeafConditionSchema = z.discriminatedUnion('op', [
  z.strictObject({ fact, op: z.literal(['eq', 'neq']), value: ScalarSchema, caseSensitive }),
  z.strictObject({ fact, op: z.literal(['in', 'not_in']), value: z.array(ScalarSchema).min(1), caseSensitive }),
  z.strictObject({
    fact,
    op: z.literal(['contains', 'not_contains', 'starts_with']),
    value: z.string().min(1),
    caseSensitive,
  }),
  z.strictObject({
    fact,
    op: z.literal('matches'),
    value: z.string().superRefine((pattern, ctx) => {
      const problem = checkPattern(pattern);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
    caseSensitive,
  }),
  // `value` is refused rather than ignored: `{ op: 'exists', value: false }` would otherwise silently mean "exists".
  z.strictObject({ fact, op: z.literal('exists') }),
  z.strictObject({ fact, op: z.literal(['gt', 'gte', 'lt', 'lte']), value: z.number().finite() }),
  z.strictObject({ fact, op: z.literal('within_hours'), value: z.strictObject({ team: z.string().min(1) }) }),
]);

const GROUP_KEYS = ['all', 'any', 'not', 'fact'] as const;

// A plain z.union reports "Invalid input" with one error list per branch; picking the branch by its key
// gives the author errors about the shape they meant.
export const ConditionSchema: z.ZodType<Condition> = z.lazy(() =>
  z.unknown().transform((input, ctx): Condition => {
    const keys = typeof input === 'object' && input !== null && !Array.isArray(input) ? GROUP_KEYS.filter((k) => k in input) : [];
    if (keys.length !== 1) {
      ctx.addIssue({
        code: 'custom',
        message: 'a condition is exactly one of { all: [...] }, { any: [...] }, { not: {...} } or { fact, op, value }',
      });
      return z.NEVER;
    }
    const schema = keys[0] === 'all' ? AllSchema : keys[0] === 'any' ? AnySchema : keys[0] === 'not' ? NotSchema : LeafConditionSchema;
    const result = schema.safeParse(input);
    if (!result.success) {
      for (const issue of result.error.issues) ctx.addIssue({ code: 'custom', message: issue.message, path: issue.path });
      return z.NEVER;
    }
    return result.data;
  }),
);
const AllSchema = z.strictObject({ all: z.array(ConditionSchema) });
const AnySchema = z.strictObject({ any: z.array(ConditionSchema) });
const NotSchema = z.strictObject({ not: ConditionSchema });

// ---- targets and actions -----------------------------------------------------------------------------------

const id = z.string().min(1);

export const CoordinatorTargetSchema = z.strictObject({ kind: z.literal('coordinator'), coordinatorId: id });
export const TeamTargetSchema = z.strictObject({
  kind: z.literal('team'),
  teamId: id,
  strategy: z.enum(POOL_STRATEGIES),
  /** Each must be among the coordinator's skills or languages (case-insensitive), so `['es']` finds Spanish speakers. */
  requiredSkills: z.array(z.string().min(1)).optional(),
});
export const StickyTargetSchema = z.strictObject({ kind: z.literal('sticky') });

export const TargetSchema = z.discriminatedUnion('kind', [CoordinatorTargetSchema, TeamTargetSchema, StickyTargetSchema]);
export type Target = z.output<typeof TargetSchema>;
export type CoordinatorTarget = z.output<typeof CoordinatorTargetSchema>;
export type TeamTarget = z.output<typeof TeamTargetSchema>;

/** Where an away coordinator's messages go; "keep the current coordinator" would loop, so sticky is excluded. */
export const FallbackTargetSchema = z.discriminatedUnion('kind', [CoordinatorTargetSchema, TeamTargetSchema]);
export type FallbackTarget = z.output<typeof FallbackTargetSchema>;

/**
 * The next target when the previous step has gone unaccepted/unanswered for `afterMinutes`.
 * `afterMinutes: 0` means "instead, straight away, if the previous step can't take the message now"; when the
 * previous step does take it, a zero-minute fallback is passed over.
 */
export const FallbackSchema = z.strictObject({
  target: TargetSchema,
  afterMinutes: z.number().int().min(0),
});
export type Fallback = z.output<typeof FallbackSchema>;

export const ActionSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('set_priority'), priority: z.enum(PRIORITIES) }),
  z.strictObject({ type: z.literal('add_tags'), tags: z.array(z.string().min(1)).min(1) }),
  z.strictObject({
    type: z.literal('auto_reply'),
    text: z.string().min(1),
    /** The engine drops this reply when the conversation got an auto-reply less than this long ago. */
    minIntervalMinutes: z.number().int().min(0),
  }),
  z.strictObject({ type: z.literal('raise_alert'), severity: z.enum(ALERT_SEVERITIES), message: z.string().min(1) }),
]);
export type Action = z.output<typeof ActionSchema>;

// ---- rules -------------------------------------------------------------------------------------------------

export const RuleSchema = z.strictObject({
  id,
  name: z.string().min(1),
  description: z.string().optional(),
  enabled: z.boolean().default(true),
  conditions: ConditionSchema,
  target: TargetSchema,
  /**
   * Off by default: for a patient who already has a coordinator, the rule's actions still apply but the
   * patient stays with that coordinator. On: the rule's target replaces the current coordinator.
   */
  overrideAssignment: z.boolean().default(false),
  fallbacks: z.array(FallbackSchema).default([]),
  actions: z.array(ActionSchema).default([]),
  /** The queue a message waits in when no target can take it; defaults to the first team the rule names. */
  queueTeamId: id.optional(),
});
export type Rule = z.output<typeof RuleSchema>;

/** The `ruleId` of decisions made by the default rule; no rule may use it. */
export const DEFAULT_RULE_ID = 'default';

/** Applies when no rule matches. It never overrides an existing assignment. */
export const DefaultRuleSchema = z.strictObject(
  {
  name: z.string().min(1).default('Default'),
  target: TargetSchema,
  fallbacks: z.array(FallbackSchema).default([]),
  actions: z.array(ActionSchema).default([]),
    /** The queue of last resort for every rule: no message is ever left without one. */
    queueTeamId: id,
  },
  { error: (issue) => (issue.input === undefined ? 'a default rule is required: it routes every message no rule matches' : undefined) },
);
export type DefaultRule = z.output<typeof DefaultRuleSchema>;

/** A team's routing settings. Membership lives on coordinators (`CoordinatorFact.teamIds`), not here. */
export const TeamSchema = TeamScheduleSchema.extend({ id, name: z.string().optional() });
export type Team = z.output<typeof TeamSchema>;

export const RuleSetSchema = z.strictObject({
  /** Assigned by storage; carried into every decision so it can be traced to the exact rules. */
  version: z.number().int().min(1).optional(),
  teams: z.array(TeamSchema).default([]),
  /** Ordered: the first enabled rule whose conditions hold wins. */
  rules: z.array(RuleSchema),
  defaultRule: DefaultRuleSchema,
});
export type RuleSet = z.output<typeof RuleSetSchema>;
/** What an author writes: defaults may be left out. */
export type RuleSetInput = z.input<typeof RuleSetSchema>;
