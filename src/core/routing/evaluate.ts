/**
 * The routing engine: (rule set, facts, now) → exactly one decision, with the reasons behind it.
 * Pure and deterministic; "no rule matched" and "nobody can take it" are decisions, never exceptions.
 */
import {
  compileCondition,
  compileSchedules,
  EvalContext,
  FactTable,
  findCoordinator,
  guardOf,
  traceCondition,
  type CompiledCondition,
  type ConditionTrace,
  type Guard,
} from './compile.ts';
import type { CompiledSchedule } from './business-hours.ts';
import { instantMs, type CoordinatorFact, type RoutingFacts } from './facts.ts';
import { pickFromPool } from './strategies.ts';
import { DEFAULT_RULE_ID, type Action, type Fallback, type FallbackTarget, type PoolStrategy, type Rule, type RuleSet, type Target } from './rules.ts';

export type Assignment =
  | { kind: 'coordinator'; coordinatorId: string }
  /** Nobody can take the message now: it waits in this team's queue, claimable by any member. */
  | { kind: 'queue'; teamId: string };

/** One step taken while turning the rule's target into an assignment, in order. */
export type ResolutionStep =
  | { step: 'keep_current'; coordinatorId: string; reason: 'sticky_target' | 'rule_does_not_override' }
  | { step: 'no_current_coordinator' }
  | { step: 'current_coordinator_unknown'; coordinatorId: string }
  | { step: 'coordinator'; coordinatorId: string; outcome: 'assigned' | 'at_capacity' | 'away' | 'out_of_office' | 'unknown' }
  | { step: 'away_fallback'; fromCoordinatorId: string; target: FallbackTarget | null; returnWhenBack: boolean }
  | {
      step: 'pool';
      teamId: string;
      strategy: PoolStrategy;
      requiredSkills: string[];
      members: number;
      eligible: number;
      excluded: { unavailable: number; atCapacity: number; missingSkills: number };
      chosen: string | null;
    }
  /** The previous target could not take the message and this fallback has `afterMinutes: 0`. */
  | { step: 'immediate_fallback'; index: number; target: Target }
  | { step: 'escalate'; index: number; target: Target; fromCoordinatorId: string | null }
  | { step: 'queue'; teamId: string }
  /** A defect in the engine; the message still lands in the default queue. */
  | { step: 'error'; message: string };

export interface Explanation {
  /** Enabled rules tested before one matched (all of them when the default applied). */
  rulesEvaluated: number;
  /** Leaf conditions actually evaluated, with the fact values seen: the matched rule's, or every rule's with `explain: 'all'`. */
  conditions: ConditionTrace[];
  resolution: ResolutionStep[];
  suppressedActions: Array<{ action: Action; reason: 'auto_reply_interval'; lastAutoReplyAt: string }>;
}

export interface RoutingDecision {
  ruleSetVersion: number | null;
  /** The matched rule, or `'default'`. */
  ruleId: string;
  ruleName: string;
  assignment: Assignment;
  /** The assignment is the patient's current coordinator: nothing changes hands. */
  keptCurrent: boolean;
  /**
   * The intended coordinator was away and asked for their patients back: the assignment only covers for
   * `returnToCoordinatorId`, and the patient goes back to them on their return.
   */
  returnWhenBack: boolean;
  returnToCoordinatorId: string | null;
  /** Where the message waits if nobody takes it, now or after escalation. */
  queueTeamId: string;
  /** Still to try, in order, each once the previous step has gone unaccepted for `afterMinutes`. See `escalateDecision`. */
  fallbacks: Fallback[];
  /** To perform beside the assignment; throttled auto-replies are already removed. */
  actions: Action[];
  explanation: Explanation;
}

export interface RouteOptions {
  /** `'all'` also traces rules that did not match (for dry runs); `'matched'` (default) keeps routing cheap. */
  explain?: 'matched' | 'all';
}

interface CompiledRule {
  id: string;
  name: string;
  condition: CompiledCondition | null;
  guard: Guard | null;
  test: (ctx: EvalContext) => boolean;
  target: Target;
  overrideAssignment: boolean;
  fallbacks: Fallback[];
  actions: Action[];
  explicitQueueTeamId: string | null;
  /** The queue when nothing at run time names a team: the first team among target and fallbacks, else the default queue. */
  staticQueueTeamId: string;
}

const COMPILED = Symbol('CompiledRuleSet');

export interface CompiledRuleSet {
  readonly [COMPILED]: true;
  readonly ruleSet: RuleSet;
  readonly rules: readonly CompiledRule[];
  readonly defaultRule: CompiledRule;
  readonly schedules: ReadonlyMap<string, CompiledSchedule>;
  readonly facts: FactTable;
}

/**
 * Precompiles conditions (regexes included) into closures. Expects a rule set from `validateRuleSet`; a pattern
 * that is invalid or unsupported anyway compiles to a condition that never matches, so this does not throw.
 */
export function compileRuleSet(ruleSet: RuleSet): CompiledRuleSet {
  const defaultQueue = ruleSet.defaultRule.queueTeamId;
  const facts = new FactTable();
  const compileRule = (rule: Rule): CompiledRule => {
    const condition = compileCondition(rule.conditions, facts);
    return {
      id: rule.id,
      name: rule.name,
      condition,
      guard: guardOf(condition),
      test: condition.test,
      target: rule.target,
      overrideAssignment: rule.overrideAssignment,
      fallbacks: rule.fallbacks,
      actions: rule.actions,
      explicitQueueTeamId: rule.queueTeamId ?? null,
      staticQueueTeamId: firstTeam([rule.target, ...rule.fallbacks.map((f) => f.target)]) ?? defaultQueue,
    };
  };
  const d = ruleSet.defaultRule;
  return {
    [COMPILED]: true,
    ruleSet,
    rules: ruleSet.rules.filter((r) => r.enabled).map(compileRule),
    defaultRule: {
      id: DEFAULT_RULE_ID,
      name: d.name,
      condition: null,
      guard: null,
      test: () => true,
      target: d.target,
      overrideAssignment: false,
      fallbacks: d.fallbacks,
      actions: d.actions,
      explicitQueueTeamId: null,
      staticQueueTeamId: firstTeam([d.target, ...d.fallbacks.map((f) => f.target)]) ?? d.queueTeamId,
    },
    schedules: compileSchedules(ruleSet),
    facts,
  };
}

function firstTeam(targets: readonly Target[]): string | null {
  for (const t of targets) if (t.kind === 'team') return t.teamId;
  return null;
}

// Lets callers pass the stored RuleSet object straight in without paying for compilation per message. Rule sets
// are treated as immutable values: a new version is a new object.
const compiledCache = new WeakMap<RuleSet, CompiledRuleSet>();

function compiledFor(rules: RuleSet | CompiledRuleSet): CompiledRuleSet {
  if (COMPILED in rules) return rules;
  let compiled = compiledCache.get(rules);
  if (!compiled) {
    compiled = compileRuleSet(rules);
    compiledCache.set(rules, compiled);
  }
  return compiled;
}

/**
 * Decides who gets one inbound message. The first enabled rule whose conditions hold wins, else the default rule.
 *
 * Assignment semantics:
 * - **Sticky by default.** If the patient has a current coordinator (present in `facts.coordinators`), they keep
 *   them unless the winning rule has `overrideAssignment: true`. A non-overriding rule still wins: its actions,
 *   fallbacks and queue apply, only its target is replaced by the current coordinator. The default rule never
 *   overrides. A current coordinator id missing from the facts counts as no coordinator.
 * - Keeping a patient never counts against capacity (they are already in the coordinator's load); a new
 *   assignment to a named coordinator needs `load < capacity`, and pools only pick members with room.
 * - **Away / out of office.** Such a coordinator's messages follow their `fallbackTarget` (cycles stop), and the
 *   decision carries `returnWhenBack` from the first away coordinator met.
 * - If the target can't take the message, the fallbacks with `afterMinutes: 0` that follow it are tried at once
 *   (and skipped when it can); the rest stay in `fallbacks` for the caller's timer (`escalateDecision`).
 * - **Never unrouted.** Otherwise the message waits in a queue: the rule's `queueTeamId`, else the first team
 *   tried, else the first team the rule names, else the default rule's `queueTeamId`.
 *
 * Never throws for a validated rule set, whatever the facts.
 */
export function routeMessage(
  rules: RuleSet | CompiledRuleSet,
  facts: RoutingFacts,
  now: Date,
  options: RouteOptions = {},
): RoutingDecision {
  const compiled = compiledFor(rules);
  const nowMs = now.getTime();
  try {
    const ctx = new EvalContext(facts, nowMs, compiled.schedules, compiled.facts);
    let matched = compiled.defaultRule;
    let evaluated = 0;
    for (const rule of compiled.rules) {
      evaluated++;
      const guard = rule.guard;
      if (guard !== null && (guard.ignoreCase ? ctx.lowerValue(guard.slot) : ctx.value(guard.slot)) !== guard.value) continue;
      if (rule.test(ctx)) {
        matched = rule;
        break;
      }
    }
    const conditions: ConditionTrace[] = [];
    if (options.explain === 'all') {
      for (let i = 0; i < evaluated; i++) {
        const rule = compiled.rules[i];
        if (rule?.condition) traceCondition(rule.condition, ctx, rule.id, conditions);
      }
    } else if (matched.condition) {
      traceCondition(matched.condition, ctx, matched.id, conditions);
    }
    return decide(compiled, matched, facts, ctx, nowMs, evaluated, conditions);
  } catch (error) {
    return failSafe(compiled, error);
  }
}

function decide(
  compiled: CompiledRuleSet,
  rule: CompiledRule,
  facts: RoutingFacts,
  ctx: EvalContext,
  nowMs: number,
  rulesEvaluated: number,
  conditions: ConditionTrace[],
): RoutingDecision {
  const resolver = new Resolver(facts, ctx.current);
  const currentId = facts.patient?.currentCoordinatorId;
  if (currentId && !ctx.current) resolver.steps.push({ step: 'current_coordinator_unknown', coordinatorId: currentId });

  let chosen: string | null;
  if (ctx.current && rule.target.kind !== 'sticky' && !rule.overrideAssignment) {
    resolver.steps.push({ step: 'keep_current', coordinatorId: ctx.current.id, reason: 'rule_does_not_override' });
    chosen = resolver.coordinator(ctx.current, new Set());
  } else {
    chosen = resolver.target(rule.target);
  }
  const next = tryImmediateFallbacks(resolver, rule.fallbacks, 0, chosen);
  chosen = next.chosen;

  const queueTeamId = rule.explicitQueueTeamId ?? resolver.firstTeamId ?? rule.staticQueueTeamId;
  if (chosen === null) resolver.steps.push({ step: 'queue', teamId: queueTeamId });

  const { actions, suppressed } = throttleActions(rule.actions, facts, nowMs);
  return {
    ruleSetVersion: compiled.ruleSet.version ?? null,
    ruleId: rule.id,
    ruleName: rule.name,
    assignment: chosen === null ? { kind: 'queue', teamId: queueTeamId } : { kind: 'coordinator', coordinatorId: chosen },
    keptCurrent: chosen !== null && chosen === ctx.current?.id,
    returnWhenBack: resolver.returnToCoordinatorId !== null,
    returnToCoordinatorId: resolver.returnToCoordinatorId,
    queueTeamId,
    fallbacks: rule.fallbacks.slice(next.index),
    actions,
    explanation: { rulesEvaluated, conditions, resolution: resolver.steps, suppressedActions: suppressed },
  };
}

/**
 * A zero-minute fallback is an alternative for "the step before can't take it right now": tried at once when
 * nobody was chosen, skipped when someone was (escalating away from them after zero minutes would make no sense).
 * Returns who was chosen and the index of the first fallback left for the timer.
 */
function tryImmediateFallbacks(
  resolver: Resolver,
  fallbacks: readonly Fallback[],
  start: number,
  chosen: string | null,
): { chosen: string | null; index: number } {
  let index = start;
  for (; index < fallbacks.length; index++) {
    const fallback = fallbacks[index];
    if (!fallback || fallback.afterMinutes !== 0) break;
    if (chosen !== null) continue;
    resolver.steps.push({ step: 'immediate_fallback', index, target: fallback.target });
    chosen = resolver.target(fallback.target);
  }
  return { chosen, index };
}

/** Auto-replies go out at most once per conversation per `minIntervalMinutes`. */
function throttleActions(
  actions: readonly Action[],
  facts: RoutingFacts,
  nowMs: number,
): { actions: Action[]; suppressed: Explanation['suppressedActions'] } {
  const suppressed: Explanation['suppressedActions'] = [];
  const lastMs = instantMs(facts.conversation?.lastAutoReplyAt);
  if (lastMs === null) return { actions: actions.slice(), suppressed };
  const kept: Action[] = [];
  for (const action of actions) {
    if (action.type === 'auto_reply' && nowMs - lastMs < action.minIntervalMinutes * 60_000) {
      suppressed.push({ action, reason: 'auto_reply_interval', lastAutoReplyAt: new Date(lastMs).toISOString() });
    } else {
      kept.push(action);
    }
  }
  return { actions: kept, suppressed };
}

/** Walks targets, away-fallbacks and pools, recording each step. */
class Resolver {
  readonly steps: ResolutionStep[] = [];
  firstTeamId: string | null = null;
  returnToCoordinatorId: string | null = null;
  private awaySeen = false;
  private readonly coordinators: readonly CoordinatorFact[];

  constructor(
    facts: RoutingFacts,
    private readonly current: CoordinatorFact | undefined,
    private readonly excludeIds?: ReadonlySet<string>,
  ) {
    this.coordinators = Array.isArray(facts.coordinators) ? facts.coordinators : [];
  }

  /** The coordinator who takes the message, or null. `visited` stops away-fallback cycles. */
  target(target: Target, visited: Set<string> = new Set()): string | null {
    switch (target.kind) {
      case 'coordinator': {
        const c = findCoordinator(this.coordinators, target.coordinatorId);
        if (!c) {
          this.steps.push({ step: 'coordinator', coordinatorId: target.coordinatorId, outcome: 'unknown' });
          return null;
        }
        return this.coordinator(c, visited);
      }
      case 'team': {
        this.firstTeamId ??= target.teamId;
        const requiredSkills = (target.requiredSkills ?? []).map((s) => s.toLowerCase());
        const pick = pickFromPool(this.coordinators, {
          teamId: target.teamId,
          strategy: target.strategy,
          requiredSkills,
          excludeIds: this.excludeIds,
        });
        this.steps.push({
          step: 'pool',
          teamId: target.teamId,
          strategy: target.strategy,
          requiredSkills,
          members: pick.members,
          eligible: pick.eligible,
          excluded: pick.excluded,
          chosen: pick.coordinatorId,
        });
        return pick.coordinatorId;
      }
      case 'sticky':
        if (!this.current) {
          this.steps.push({ step: 'no_current_coordinator' });
          return null;
        }
        this.steps.push({ step: 'keep_current', coordinatorId: this.current.id, reason: 'sticky_target' });
        return this.coordinator(this.current, visited);
    }
  }

  coordinator(c: CoordinatorFact, visited: Set<string>): string | null {
    if (c.status === 'available') {
      // The current coordinator already carries this patient in `load`, so keeping them adds nothing.
      const hasRoom = c === this.current || c.load < c.capacity;
      this.steps.push({ step: 'coordinator', coordinatorId: c.id, outcome: hasRoom ? 'assigned' : 'at_capacity' });
      return hasRoom ? c.id : null;
    }
    this.steps.push({ step: 'coordinator', coordinatorId: c.id, outcome: c.status === 'out_of_office' ? 'out_of_office' : 'away' });
    const returnWhenBack = c.returnWhenBack === true;
    if (!this.awaySeen) {
      this.awaySeen = true;
      if (returnWhenBack) this.returnToCoordinatorId = c.id;
    }
    const fallback = c.fallbackTarget && !visited.has(c.id) ? c.fallbackTarget : null;
    this.steps.push({ step: 'away_fallback', fromCoordinatorId: c.id, target: fallback, returnWhenBack });
    if (!fallback) return null;
    visited.add(c.id);
    return this.target(fallback, visited);
  }
}

/**
 * The next step once the current assignment has gone unaccepted for the head fallback's `afterMinutes` (the
 * caller's timer decides that). Returns null when no fallback is left: the message stays where it is.
 * The coordinator who let it time out is left out of pools. Actions are not repeated. A team fallback nobody in
 * it can take queues there; otherwise the decision's queue stands.
 */
export function escalateDecision(decision: RoutingDecision, facts: RoutingFacts): RoutingDecision | null {
  const head = decision.fallbacks[0];
  if (!head) return null;
  const previous = decision.assignment.kind === 'coordinator' ? decision.assignment.coordinatorId : null;
  try {
    const current = facts.patient?.currentCoordinatorId ? findCoordinator(facts.coordinators, facts.patient.currentCoordinatorId) : undefined;
    const resolver = new Resolver(facts, current, previous ? new Set([previous]) : undefined);
    resolver.steps.push({ step: 'escalate', index: 0, target: head.target, fromCoordinatorId: previous });
    const next = tryImmediateFallbacks(resolver, decision.fallbacks, 1, resolver.target(head.target));
    const chosen = next.chosen;
    const queueTeamId = resolver.firstTeamId ?? decision.queueTeamId;
    if (chosen === null) resolver.steps.push({ step: 'queue', teamId: queueTeamId });
    const returnTo = decision.returnToCoordinatorId ?? resolver.returnToCoordinatorId;
    return {
      ...decision,
      assignment: chosen === null ? { kind: 'queue', teamId: queueTeamId } : { kind: 'coordinator', coordinatorId: chosen },
      keptCurrent: chosen !== null && chosen === current?.id,
      returnWhenBack: returnTo !== null,
      returnToCoordinatorId: returnTo,
      queueTeamId,
      fallbacks: decision.fallbacks.slice(next.index),
      actions: [],
      explanation: { rulesEvaluated: 0, conditions: [], resolution: resolver.steps, suppressedActions: [] },
    };
  } catch (error) {
    return { ...decision, assignment: { kind: 'queue', teamId: decision.queueTeamId }, keptCurrent: false, fallbacks: [], actions: [], explanation: { rulesEvaluated: 0, conditions: [], resolution: [{ step: 'error', message: errorMessage(error) }, { step: 'queue', teamId: decision.queueTeamId }], suppressedActions: [] } };
  }
}

/** Last line of "never unrouted": a bug in the engine still yields a queued decision that says what went wrong. */
function failSafe(compiled: CompiledRuleSet, error: unknown): RoutingDecision {
  const d = compiled.defaultRule;
  return {
    ruleSetVersion: compiled.ruleSet.version ?? null,
    ruleId: d.id,
    ruleName: d.name,
    assignment: { kind: 'queue', teamId: d.staticQueueTeamId },
    keptCurrent: false,
    returnWhenBack: false,
    returnToCoordinatorId: null,
    queueTeamId: d.staticQueueTeamId,
    fallbacks: [],
    actions: [],
    explanation: {
      rulesEvaluated: 0,
      conditions: [],
      resolution: [{ step: 'error', message: errorMessage(error) }, { step: 'queue', teamId: d.staticQueueTeamId }],
      suppressedActions: [],
    },
  };
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** "Who gets this message and why", in one readable paragraph for the timeline and the dry-run API. */
export function describeDecision(decision: RoutingDecision): string {
  const rule = decision.ruleId === DEFAULT_RULE_ID ? `no rule matched (${decision.explanation.rulesEvaluated} tested), default rule` : `rule "${decision.ruleName}" (${decision.ruleId})`;
  const who =
    decision.assignment.kind === 'coordinator'
      ? `coordinator ${decision.assignment.coordinatorId}${decision.keptCurrent ? ' (kept: current coordinator)' : ''}`
      : `the ${decision.assignment.teamId} queue`;
  const parts = [`${rule} → ${who}.`];
  const decisive = decision.explanation.conditions.filter((c) => c.ruleId === decision.ruleId);
  if (decisive.length > 0) {
    parts.push(`Because ${decisive.map((c) => `${c.fact} ${c.op}${'value' in c ? ` ${JSON.stringify(c.value)}` : ''} was ${c.result} (${JSON.stringify(c.actual)})`).join('; ')}.`);
  }
  for (const s of decision.explanation.resolution) {
    switch (s.step) {
      case 'keep_current':
        parts.push(`Kept current coordinator ${s.coordinatorId}${s.reason === 'rule_does_not_override' ? ' (the rule does not override assignments)' : ''}.`);
        break;
      case 'no_current_coordinator':
        parts.push('No current coordinator to keep.');
        break;
      case 'current_coordinator_unknown':
        parts.push(`Current coordinator ${s.coordinatorId} is not among the known coordinators.`);
        break;
      case 'coordinator':
        if (s.outcome !== 'assigned') parts.push(`${s.coordinatorId} is ${s.outcome.replaceAll('_', ' ')}.`);
        break;
      case 'away_fallback':
        parts.push(s.target ? `${s.fromCoordinatorId}'s fallback is ${describeTarget(s.target)}${s.returnWhenBack ? ' until they are back' : ''}.` : `${s.fromCoordinatorId} has no usable fallback.`);
        break;
      case 'pool':
        parts.push(
          `Team ${s.teamId} (${s.strategy.replaceAll('_', ' ')}): ${s.eligible} of ${s.members} eligible` +
            ` (${s.excluded.unavailable} unavailable, ${s.excluded.atCapacity} at capacity, ${s.excluded.missingSkills} missing skills)` +
            (s.chosen ? `, chose ${s.chosen}.` : '.'),
        );
        break;
      case 'immediate_fallback':
        parts.push(`Fallback ${s.index + 1}: ${describeTarget(s.target)}.`);
        break;
      case 'escalate':
        parts.push(`Escalated${s.fromCoordinatorId ? ` from ${s.fromCoordinatorId}` : ''} to ${describeTarget(s.target)}.`);
        break;
      case 'queue':
        parts.push(`Waits in the ${s.teamId} queue.`);
        break;
      case 'error':
        parts.push(`Engine error: ${s.message}.`);
        break;
    }
  }
  return parts.join(' ');
}

function describeTarget(target: Target): string {
  switch (target.kind) {
    case 'coordinator':
      return `coordinator ${target.coordinatorId}`;
    case 'team':
      return `team ${target.teamId}`;
    case 'sticky':
      return 'the current coordinator';
  }
}
