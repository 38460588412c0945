/**
 * Turns a validated rule set into closures once, so routing a message does no parsing, no regex compilation
 * and no string lower-casing of rule values. Tracing walks the same compiled tree, only for rules being explained.
 */
import { checkOpen, compileSchedule, formatLocalTime, isOpenAt, type CompiledSchedule } from './business-hours.ts';
import type { CoordinatorFact, RoutingFacts } from './facts.ts';
import { compilePattern } from './pattern.ts';
import { ATTRIBUTE_PREFIX, type Condition, type LeafCondition, type RuleSet, type Scalar } from './rules.ts';

const UNSET: unique symbol = Symbol('unset');

/**
 * Every fact path a rule set reads gets a slot, so each fact is read, and lower-cased, at most once per message
 * however many rules test it.
 */
export class FactTable {
  private readonly slots = new Map<string, number>();
  readonly readers: Read[] = [];

  slotFor(fact: string): number {
    let slot = this.slots.get(fact);
    if (slot === undefined) {
      slot = this.readers.length;
      this.readers.push(readerFor(fact));
      this.slots.set(fact, slot);
    }
    return slot;
  }
}

/** Per-message state: facts looked up once and shared by every rule tested for this message. */
export class EvalContext {
  private readonly raw: unknown[];
  private readonly lowered: unknown[];
  private currentDone = false;
  private currentValue: CoordinatorFact | undefined;
  private openByTeam: Map<string, boolean> | undefined;

  constructor(
    readonly facts: RoutingFacts,
    readonly nowMs: number,
    private readonly schedules: ReadonlyMap<string, CompiledSchedule>,
    private readonly table: FactTable,
  ) {
    this.raw = new Array<unknown>(table.readers.length).fill(UNSET);
    this.lowered = new Array<unknown>(table.readers.length).fill(UNSET);
  }

  value(slot: number): unknown {
    let v = this.raw[slot];
    if (v === UNSET) {
      v = this.table.readers[slot]?.(this);
      this.raw[slot] = v;
    }
    return v;
  }

  /** The fact with a string lower-cased (lists are left alone: their matchers lower-case elements). */
  lowerValue(slot: number): unknown {
    let v = this.lowered[slot];
    if (v === UNSET) {
      v = this.value(slot);
      if (typeof v === 'string') v = v.toLowerCase();
      this.lowered[slot] = v;
    }
    return v;
  }

  /** The patient's current coordinator, if the patient has one and it is among the coordinator facts. */
  get current(): CoordinatorFact | undefined {
    if (!this.currentDone) {
      this.currentDone = true;
      const id = this.facts.patient?.currentCoordinatorId;
      this.currentValue = id ? findCoordinator(this.facts.coordinators, id) : undefined;
    }
    return this.currentValue;
  }

  isOpen(teamId: string): boolean {
    const cached = this.openByTeam?.get(teamId);
    if (cached !== undefined) return cached;
    const schedule = this.schedules.get(teamId);
    const open = schedule ? isOpenAt(schedule, this.nowMs) : false;
    (this.openByTeam ??= new Map()).set(teamId, open);
    return open;
  }

  describeHours(teamId: string): unknown {
    const schedule = this.schedules.get(teamId);
    if (!schedule) return { team: teamId, configured: false };
    const check = checkOpen(schedule, this.nowMs);
    return { team: teamId, timeZone: schedule.timeZone, localTime: check.local ? formatLocalTime(check.local) : null, holiday: check.isHoliday };
  }
}

export function findCoordinator(coordinators: readonly CoordinatorFact[] | undefined, id: string): CoordinatorFact | undefined {
  if (!Array.isArray(coordinators)) return undefined;
  for (const c of coordinators) if (c?.id === id) return c;
  return undefined;
}

type Read = (ctx: EvalContext) => unknown;
type Test = (ctx: EvalContext) => boolean;

export type CompiledCondition =
  | { kind: 'all'; children: CompiledCondition[]; test: Test }
  | { kind: 'any'; children: CompiledCondition[]; test: Test }
  | { kind: 'not'; child: CompiledCondition; test: Test }
  | { kind: 'leaf'; path: string; condition: LeafCondition; read: Read; test: Test; guard: Guard | null };

/** `fact eq value`, checked inline by the rule loop before calling any closure. */
export interface Guard {
  slot: number;
  value: Scalar;
  ignoreCase: boolean;
}

/**
 * A test the whole condition can't hold without: the leaf itself, or an `eq` leaf directly under a top-level
 * `all`. Most rules start with one (`patient.program eq …`), and most messages fail it, so the rule loop rejects
 * them with an array read and a comparison.
 */
export function guardOf(node: CompiledCondition): Guard | null {
  if (node.kind === 'leaf') return node.guard;
  if (node.kind !== 'all') return null;
  for (const child of node.children) if (child.kind === 'leaf' && child.guard) return child.guard;
  return null;
}

/** One leaf condition as evaluated for one message. */
export interface ConditionTrace {
  ruleId: string;
  /** Where the condition sits in the rule, e.g. `conditions.all[1].any[0]`. */
  path: string;
  fact: string;
  op: LeafCondition['op'];
  value?: unknown;
  /** The fact's value for this message (long text is cut); for `within_hours`, the team's local time. */
  actual: unknown;
  result: boolean;
}

export function compileCondition(condition: Condition, table: FactTable, path = 'conditions'): CompiledCondition {
  if ('all' in condition) {
    const children = condition.all.map((c, i) => compileCondition(c, table, `${path}.all[${i}]`));
    const tests = children.map((c) => c.test);
    return { kind: 'all', children, test: allOf(tests) };
  }
  if ('any' in condition) {
    const children = condition.any.map((c, i) => compileCondition(c, table, `${path}.any[${i}]`));
    const tests = children.map((c) => c.test);
    return { kind: 'any', children, test: anyOf(tests) };
  }
  if ('not' in condition) {
    const child = compileCondition(condition.not, table, `${path}.not`);
    const inner = child.test;
    return { kind: 'not', child, test: (ctx) => !inner(ctx) };
  }
  const slot = table.slotFor(condition.fact);
  const leaf = compileLeaf(condition, slot);
  const ignoreCase = !('caseSensitive' in condition && condition.caseSensitive === true);
  const guard = condition.op === 'eq' ? { slot, value: normalise(condition.value, ignoreCase), ignoreCase } : null;
  return { kind: 'leaf', path, condition, ...leaf, guard };
}

// Small fixed arities avoid a loop and an array read per test, which is most rules.
function allOf(tests: Test[]): Test {
  const [a, b, c] = tests;
  if (tests.length === 0) return () => true;
  if (tests.length === 1 && a) return a;
  if (tests.length === 2 && a && b) return (ctx) => a(ctx) && b(ctx);
  if (tests.length === 3 && a && b && c) return (ctx) => a(ctx) && b(ctx) && c(ctx);
  return (ctx) => {
    for (const t of tests) if (!t(ctx)) return false;
    return true;
  };
}

function anyOf(tests: Test[]): Test {
  const [a, b, c] = tests;
  if (tests.length === 0) return () => false;
  if (tests.length === 1 && a) return a;
  if (tests.length === 2 && a && b) return (ctx) => a(ctx) || b(ctx);
  if (tests.length === 3 && a && b && c) return (ctx) => a(ctx) || b(ctx) || c(ctx);
  return (ctx) => {
    for (const t of tests) if (t(ctx)) return true;
    return false;
  };
}

const BUILT_IN_READERS: Readonly<Record<string, Read>> = {
  'patient.id': (ctx) => ctx.facts.patient?.id,
  'patient.program': (ctx) => ctx.facts.patient?.program,
  'patient.language': (ctx) => ctx.facts.patient?.language,
  'patient.state': (ctx) => ctx.facts.patient?.state,
  'patient.timeZone': (ctx) => ctx.facts.patient?.timeZone,
  'patient.riskTier': (ctx) => ctx.facts.patient?.riskTier,
  'patient.tags': (ctx) => ctx.facts.patient?.tags,
  'patient.currentCoordinatorId': (ctx) => ctx.facts.patient?.currentCoordinatorId,
  'message.text': (ctx) => ctx.facts.message?.text,
  'message.channel': (ctx) => ctx.facts.message?.channel,
  'message.hasMedia': (ctx) => ctx.facts.message?.hasMedia,
  'coordinator.id': (ctx) => ctx.current?.id,
  'coordinator.status': (ctx) => ctx.current?.status,
  'coordinator.load': (ctx) => ctx.current?.load,
  'coordinator.capacity': (ctx) => ctx.current?.capacity,
  'coordinator.skills': (ctx) => ctx.current?.skills,
  'coordinator.languages': (ctx) => ctx.current?.languages,
};

function readerFor(fact: string): Read {
  const builtIn = Object.hasOwn(BUILT_IN_READERS, fact) ? BUILT_IN_READERS[fact] : undefined;
  if (builtIn) return builtIn;
  if (fact.startsWith(ATTRIBUTE_PREFIX)) {
    const name = fact.slice(ATTRIBUTE_PREFIX.length);
    return (ctx) => ownProperty(ctx.facts.patient?.attributes, name);
  }
  // Paths from `knownFactPaths`, e.g. `patient.attributes.address.zip` or `conversation.openedAt`.
  const [head, ...rest] = fact.split('.');
  const walk = (root: unknown): unknown => {
    let value = root;
    for (const key of rest) value = ownProperty(value, key);
    return value;
  };
  if (head === 'patient') return (ctx) => walk(ctx.facts.patient);
  if (head === 'message') return (ctx) => walk(ctx.facts.message);
  if (head === 'coordinator') return (ctx) => walk(ctx.current);
  if (head === 'conversation') return (ctx) => walk(ctx.facts.conversation);
  return () => undefined;
}

// Own properties only: `patient.attributes.constructor` must not find Object.prototype.constructor.
function ownProperty(value: unknown, key: string): unknown {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  return Object.hasOwn(value, key) ? (value as Record<string, unknown>)[key] : undefined;
}

function normalise(value: Scalar, ignoreCase: boolean): Scalar {
  return ignoreCase && typeof value === 'string' ? value.toLowerCase() : value;
}

function isPresent(v: unknown): boolean {
  return v !== undefined && v !== null && v !== '' && !(Array.isArray(v) && v.length === 0);
}

/** Arrays (list facts) match when any element does. */
function someElement(v: unknown, test: (element: unknown) => boolean): boolean {
  if (!Array.isArray(v)) return test(v);
  for (const element of v) if (test(element)) return true;
  return false;
}

function compileLeaf(condition: LeafCondition, slot: number): { read: Read; test: Test } {
  const read: Read = (ctx) => ctx.value(slot);
  const ignoreCase = !('caseSensitive' in condition && condition.caseSensitive === true);
  const readText: Read = ignoreCase ? (ctx) => ctx.lowerValue(slot) : read;
  // For list facts each element is lower-cased by the matcher, not the reader.
  const lowerElement = (e: unknown) => (ignoreCase && typeof e === 'string' ? e.toLowerCase() : e);

  switch (condition.op) {
    case 'eq':
    case 'neq': {
      const expected = normalise(condition.value, ignoreCase);
      const eq: Test = (ctx) => {
        const v = readText(ctx);
        return Array.isArray(v) ? false : v === expected;
      };
      return { read, test: condition.op === 'eq' ? eq : (ctx) => !eq(ctx) };
    }
    case 'in':
    case 'not_in': {
      const set = new Set(condition.value.map((v) => normalise(v, ignoreCase)));
      const isIn: Test = (ctx) => {
        const v = readText(ctx);
        return Array.isArray(v) ? v.some((e) => set.has(lowerElement(e) as Scalar)) : set.has(v as Scalar);
      };
      return { read, test: condition.op === 'in' ? isIn : (ctx) => !isIn(ctx) };
    }
    case 'contains':
    case 'not_contains': {
      const needle = normalise(condition.value, ignoreCase) as string;
      const contains: Test = (ctx) => {
        const v = readText(ctx);
        if (typeof v === 'string') return v.includes(needle);
        return Array.isArray(v) && v.some((e) => lowerElement(e) === needle);
      };
      return { read, test: condition.op === 'contains' ? contains : (ctx) => !contains(ctx) };
    }
    case 'starts_with': {
      const prefix = normalise(condition.value, ignoreCase) as string;
      const startsWith: Test = (ctx) => {
        const v = readText(ctx);
        if (typeof v === 'string') return v.startsWith(prefix);
        return Array.isArray(v) && v.some((e) => typeof e === 'string' && (lowerElement(e) as string).startsWith(prefix));
      };
      return { read, test: startsWith };
    }
    case 'matches': {
      // Validation already refused invalid or unsupported patterns; an unvalidated one simply never matches.
      const compiled = compilePattern(condition.value, !ignoreCase);
      if (!compiled.ok) return { read, test: () => false };
      const regex = compiled.pattern;
      return { read, test: (ctx) => someElement(read(ctx), (e) => typeof e === 'string' && regex.test(e)) };
    }
    case 'exists':
      return { read, test: (ctx) => isPresent(read(ctx)) };
    case 'gt': {
      const n = condition.value;
      return { read, test: (ctx) => compareNumber(read(ctx), (v) => v > n) };
    }
    case 'gte': {
      const n = condition.value;
      return { read, test: (ctx) => compareNumber(read(ctx), (v) => v >= n) };
    }
    case 'lt': {
      const n = condition.value;
      return { read, test: (ctx) => compareNumber(read(ctx), (v) => v < n) };
    }
    case 'lte': {
      const n = condition.value;
      return { read, test: (ctx) => compareNumber(read(ctx), (v) => v <= n) };
    }
    case 'within_hours': {
      const team = condition.value.team;
      return { read: (ctx) => ctx.describeHours(team), test: (ctx) => ctx.isOpen(team) };
    }
  }
}

function compareNumber(v: unknown, test: (n: number) => boolean): boolean {
  return typeof v === 'number' && !Number.isNaN(v) && test(v);
}

/** Re-evaluates `node` recording each leaf actually evaluated (same short-circuiting as `test`). */
export function traceCondition(node: CompiledCondition, ctx: EvalContext, ruleId: string, out: ConditionTrace[]): boolean {
  switch (node.kind) {
    case 'all':
      for (const child of node.children) if (!traceCondition(child, ctx, ruleId, out)) return false;
      return true;
    case 'any':
      for (const child of node.children) if (traceCondition(child, ctx, ruleId, out)) return true;
      return false;
    case 'not':
      return !traceCondition(node.child, ctx, ruleId, out);
    case 'leaf': {
      const result = node.test(ctx);
      const c = node.condition;
      const trace: ConditionTrace = { ruleId, path: node.path, fact: c.fact, op: c.op, actual: clip(node.read(ctx)), result };
      if ('value' in c) trace.value = c.value;
      out.push(trace);
      return result;
    }
  }
}

const MAX_TRACE_TEXT = 200;
function clip(value: unknown): unknown {
  return typeof value === 'string' && value.length > MAX_TRACE_TEXT ? `${value.slice(0, MAX_TRACE_TEXT)}…` : value;
}

export function compileSchedules(ruleSet: RuleSet): Map<string, CompiledSchedule> {
  return new Map((ruleSet.teams ?? []).map((t) => [t.id, compileSchedule(t)]));
}
