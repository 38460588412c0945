/**
 * Accepting a rule set: the schema, then everything the schema can't know (which coordinators, teams and facts
 * exist). Every problem is reported at once, each with its path, so an author fixes a file in one round.
 */
import {
  ATTRIBUTE_PREFIX,
  FACTS,
  OPERATORS,
  OPERATORS_BY_KIND,
  RuleSetSchema,
  type FactSpec,
  type Operator,
  type RuleSet,
  DEFAULT_RULE_ID,
} from './rules.ts';

export interface ValidationContext {
  coordinatorIds: Iterable<string>;
  teamIds: Iterable<string>;
  /**
   * Further fact paths conditions may name, under `patient.`, `message.`, `coordinator.` (the current coordinator)
   * or `conversation.`. When given, custom attributes must be listed too
   * (`patient.attributes.insurer`), which catches typos; when omitted, any `patient.attributes.<name>` is accepted.
   */
  knownFactPaths?: Iterable<string>;
}

export interface ValidationError {
  /** Where in the input, e.g. `rules[2].conditions.all[0].value`; empty for the whole rule set. */
  path: string;
  message: string;
}

export type ValidationResult = { ok: true; ruleSet: RuleSet } | { ok: false; errors: ValidationError[] };

/** Deeper nesting than this is refused: no real rule needs it and it bounds recursion everywhere. */
export const MAX_CONDITION_DEPTH = 32;

type Path = Array<string | number>;
interface Problem {
  path: Path;
  message: string;
}

/** Never throws; the rule set comes back with defaults filled in only when there is nothing to report. */
export function validateRuleSet(input: unknown, context: ValidationContext): ValidationResult {
  const problems: Problem[] = [];
  try {
    const parsed = RuleSetSchema.safeParse(withoutDeepConditions(input));
    if (!parsed.success) {
      for (const issue of parsed.error.issues) problems.push({ path: issue.path.map(pathKey), message: issue.message });
    }
    problems.push(...checkReferences(input, context));
    if (problems.length === 0 && parsed.success) return { ok: true, ruleSet: parsed.data };
  } catch (error) {
    // Only pathological input gets here (e.g. nesting deep enough to exhaust the stack).
    problems.push({ path: [], message: `rule set could not be checked: ${error instanceof Error ? error.message : String(error)}` });
  }
  return { ok: false, errors: dedupe(problems.sort((a, b) => comparePaths(a.path, b.path))).map(formatProblem) };
}

/**
 * The schema recurses once per nesting level, so absurd nesting would exhaust the stack before any error could be
 * listed. Such conditions are swapped for an empty group before parsing; `checkReferences` reports their depth.
 */
function withoutDeepConditions(input: unknown): unknown {
  if (!isRecord(input) || !Array.isArray(input.rules)) return input;
  let changed = false;
  const rules = input.rules.map((rule: unknown) => {
    if (!isRecord(rule) || conditionDepth(rule.conditions) <= MAX_CONDITION_DEPTH) return rule;
    changed = true;
    return { ...rule, conditions: { all: [] } };
  });
  return changed ? { ...input, rules } : input;
}

/** Iterative, so measuring cannot overflow either; stops counting past the limit. */
function conditionDepth(root: unknown): number {
  let max = 0;
  const stack: Array<[unknown, number]> = [[root, 1]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!;
    if (!isRecord(node)) continue;
    max = Math.max(max, depth);
    if (max > MAX_CONDITION_DEPTH) return max;
    for (const key of ['all', 'any'] as const) {
      const children = node[key];
      if (Array.isArray(children)) for (const child of children) stack.push([child, depth + 1]);
    }
    if ('not' in node) stack.push([node.not, depth + 1]);
  }
  return max;
}

function pathKey(key: PropertyKey): string | number {
  return typeof key === 'number' ? key : String(key);
}

function comparePaths(a: Path, b: Path): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const x = a[i];
    const y = b[i];
    if (x === y) continue;
    if (typeof x === 'number' && typeof y === 'number') return x - y;
    return String(x) < String(y) ? -1 : 1;
  }
  return a.length - b.length;
}

function dedupe(problems: Problem[]): Problem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const key = `${formatPath(p.path)}\u0000${p.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

export function formatPath(path: Path): string {
  let out = '';
  for (const key of path) out += typeof key === 'number' ? `[${key}]` : out === '' ? key : `.${key}`;
  return out;
}

function formatProblem(p: Problem): ValidationError {
  return { path: formatPath(p.path), message: p.message };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function arrayAt(v: unknown, key: string): unknown[] {
  if (!isRecord(v)) return [];
  const a = v[key];
  return Array.isArray(a) ? a : [];
}

/**
 * The checks that need context. Walks the raw input, not the parsed output, so a schema error in one rule does
 * not hide an unknown team in another; anything not shaped well enough to check is left to the schema errors.
 */
function checkReferences(input: unknown, context: ValidationContext): Problem[] {
  const problems: Problem[] = [];
  const report = (path: Path, message: string) => problems.push({ path, message });
  const coordinatorIds = new Set(context.coordinatorIds);
  const teamIds = new Set(context.teamIds);
  const extraFacts = context.knownFactPaths ? new Set(context.knownFactPaths) : null;

  const scheduledTeams = new Set<string>();
  arrayAt(input, 'teams').forEach((team, i) => {
    if (!isRecord(team) || typeof team.id !== 'string') return;
    if (scheduledTeams.has(team.id)) report(['teams', i, 'id'], `team "${team.id}" is listed twice`);
    scheduledTeams.add(team.id);
    if (!teamIds.has(team.id)) report(['teams', i, 'id'], `unknown team "${team.id}"`);
  });

  const checkTeamId = (path: Path, teamId: unknown) => {
    if (typeof teamId === 'string' && !teamIds.has(teamId)) report(path, `unknown team "${teamId}"`);
  };
  const checkTarget = (path: Path, target: unknown) => {
    if (!isRecord(target)) return;
    if (target.kind === 'coordinator' && typeof target.coordinatorId === 'string' && !coordinatorIds.has(target.coordinatorId)) {
      report([...path, 'coordinatorId'], `unknown coordinator "${target.coordinatorId}"`);
    }
    if (target.kind === 'team') checkTeamId([...path, 'teamId'], target.teamId);
  };
  const checkRuleBody = (path: Path, rule: Record<string, unknown>) => {
    checkTarget([...path, 'target'], rule.target);
    arrayAt(rule, 'fallbacks').forEach((f, i) => {
      if (isRecord(f)) checkTarget([...path, 'fallbacks', i, 'target'], f.target);
    });
    checkTeamId([...path, 'queueTeamId'], rule.queueTeamId);
  };

  const factSpec = (fact: string): FactSpec | undefined => {
    const builtIn = FACTS[fact];
    if (builtIn) return builtIn;
    if (extraFacts?.has(fact)) return { kind: 'any' };
    if (!extraFacts && fact.startsWith(ATTRIBUTE_PREFIX) && fact.length > ATTRIBUTE_PREFIX.length) return { kind: 'any' };
    return undefined;
  };

  const checkLeaf = (path: Path, leaf: Record<string, unknown>) => {
    const fact = leaf.fact;
    if (typeof fact !== 'string') return;
    const spec = factSpec(fact);
    if (!spec) {
      const hint = closestFact(fact, extraFacts);
      report([...path, 'fact'], `unknown fact "${fact}"${hint ? `; did you mean "${hint}"?` : ''}`);
      return;
    }
    const op = leaf.op;
    if (typeof op !== 'string' || !(OPERATORS as readonly string[]).includes(op)) return;
    if (!OPERATORS_BY_KIND[spec.kind].includes(op as Operator)) {
      report([...path, 'op'], `"${op}" does not apply to ${fact} (${describeKind(spec)})`);
      return;
    }
    if (op === 'within_hours') {
      const team = isRecord(leaf.value) ? leaf.value.team : undefined;
      if (typeof team === 'string' && !scheduledTeams.has(team)) {
        report([...path, 'value', 'team'], `team "${team}" has no business hours in this rule set's "teams"`);
      }
      return;
    }
    const values = op === 'in' || op === 'not_in' ? (Array.isArray(leaf.value) ? leaf.value : []) : 'value' in leaf ? [leaf.value] : [];
    const valuePath = (i: number): Path => (op === 'in' || op === 'not_in' ? [...path, 'value', i] : [...path, 'value']);
    values.forEach((value, i) => {
      const problem = checkValueType(spec, op as Operator, value, leaf.caseSensitive === true);
      if (problem) report(valuePath(i), `${fact}: ${problem}`);
    });
  };

  const walkCondition = (path: Path, node: unknown, depth: number) => {
    if (!isRecord(node)) return;
    if (depth > MAX_CONDITION_DEPTH) {
      report(path, `conditions nested deeper than ${MAX_CONDITION_DEPTH} levels`);
      return;
    }
    const keys = (['all', 'any', 'not', 'fact'] as const).filter((k) => k in node);
    if (keys.length !== 1) return;
    if (keys[0] === 'all' || keys[0] === 'any') {
      const key = keys[0];
      arrayAt(node, key).forEach((child, i) => walkCondition([...path, key, i], child, depth + 1));
    } else if (keys[0] === 'not') {
      walkCondition([...path, 'not'], node.not, depth + 1);
    } else {
      checkLeaf(path, node);
    }
  };

  const ruleIds = new Set<string>();
  arrayAt(input, 'rules').forEach((rule, i) => {
    if (!isRecord(rule)) return;
    if (typeof rule.id === 'string') {
      if (rule.id === DEFAULT_RULE_ID) report(['rules', i, 'id'], `"${DEFAULT_RULE_ID}" is reserved for the default rule`);
      else if (ruleIds.has(rule.id)) report(['rules', i, 'id'], `rule id "${rule.id}" is used twice`);
      ruleIds.add(rule.id);
    }
    walkCondition(['rules', i, 'conditions'], rule.conditions, 1);
    checkRuleBody(['rules', i], rule);
  });

  if (isRecord(input) && isRecord(input.defaultRule)) checkRuleBody(['defaultRule'], input.defaultRule);
  return problems;
}

function describeKind(spec: FactSpec): string {
  switch (spec.kind) {
    case 'list':
      return 'a list';
    case 'scalar':
      return 'a string or number';
    case 'time':
      return 'use within_hours';
    case 'any':
      return 'a custom attribute';
    default:
      return `a ${spec.kind}`;
  }
}

/** Values the fact can never equal are almost always a typo (`"true"` for a boolean, `"smss"` for a channel). */
function checkValueType(spec: FactSpec, op: Operator, value: unknown, caseSensitive: boolean): string | null {
  if (op === 'exists' || op === 'matches' || op === 'contains' || op === 'not_contains' || op === 'starts_with') return null;
  if (op === 'gt' || op === 'gte' || op === 'lt' || op === 'lte') return null; // the schema already demands a number
  switch (spec.kind) {
    case 'number':
      return typeof value === 'number' ? null : `expected a number, got ${JSON.stringify(value)}`;
    case 'boolean':
      return typeof value === 'boolean' ? null : `expected true or false, got ${JSON.stringify(value)}`;
    case 'string':
    case 'list':
      if (typeof value !== 'string') return `expected a string, got ${JSON.stringify(value)}`;
      break;
    case 'scalar':
      if (typeof value === 'boolean') return `expected a string or number, got ${value}`;
      break;
    default:
      return null;
  }
  if (spec.values && typeof value === 'string') {
    const known = spec.values.some((v) => (caseSensitive ? v === value : v.toLowerCase() === value.toLowerCase()));
    if (!known) return `"${value}" is not one of ${spec.values.join(', ')}`;
  }
  return null;
}

function closestFact(fact: string, extra: ReadonlySet<string> | null): string | null {
  let best: string | null = null;
  let bestDistance = 3;
  for (const candidate of [...Object.keys(FACTS), ...(extra ?? [])]) {
    const d = editDistance(fact, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 3) return Infinity;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row.push(Math.min((prev[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1)));
    }
    prev = row;
  }
  return prev[b.length] ?? Infinity;
}
