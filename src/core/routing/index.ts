/** The routing engine's public surface: validate a rule set, compile it once, route messages with it. */
export {
  OPERATORS,
  POOL_STRATEGIES,
  COORDINATOR_STATUSES,
  PRIORITIES,
  ALERT_SEVERITIES,
  FACTS,
  DEFAULT_RULE_ID,
  RuleSetSchema,
  RuleSchema,
  ConditionSchema,
  TargetSchema,
  ActionSchema,
  type Operator,
  type PoolStrategy,
  type CoordinatorStatus,
  type Priority,
  type Scalar,
  type Condition,
  type LeafCondition,
  type Target,
  type FallbackTarget,
  type Fallback,
  type Action,
  type Rule,
  type DefaultRule,
  type Team,
  type RuleSet,
  type RuleSetInput,
} from './rules.ts';
export { RoutingFactsSchema, type RoutingFacts, type CoordinatorFact, type PatientFacts, type MessageFacts, type ConversationFacts, type Instant } from './facts.ts';
export { validateRuleSet, type ValidationContext, type ValidationError, type ValidationResult } from './validate.ts';
export {
  compileRuleSet,
  routeMessage,
  escalateDecision,
  describeDecision,
  type CompiledRuleSet,
  type RoutingDecision,
  type Assignment,
  type Explanation,
  type ResolutionStep,
  type RouteOptions,
} from './evaluate.ts';
export type { ConditionTrace } from './compile.ts';
export { pickFromPool, type PoolRequest, type PoolPick } from './strategies.ts';
export { isWithinBusinessHours, localTimeIn, type TeamSchedule, type WeeklyHours, type Weekday } from './business-hours.ts';
