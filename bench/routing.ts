/**
 * node --import tsx bench/routing.ts — routing decisions per second on one core, for 200 rules (regexes and
 * nested groups included) and 100 coordinators. Rules are specific, so most messages are tested against most of
 * them before one matches or the default applies: close to the engine's worst case. BENCH_SECONDS overrides ~2 s.
 */
import { pathToFileURL } from 'node:url';
import { compileRuleSet, routeMessage, validateRuleSet, type Condition, type CoordinatorFact, type RoutingFacts, type Target } from '../src/core/routing/index.ts';

const RULES = 200;
const COORDINATORS = 100;
const FACT_SETS = 1024;
const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);

// Deterministic, so runs compare.
let seed = 42;
const random = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
const some = <T>(items: readonly T[], n: number): T[] => Array.from({ length: n }, () => pick(items));

const PROGRAMS = ['diabetes', 'cardiology', 'oncology', 'maternity', 'behavioral', 'ckd', 'copd', 'pediatrics'];
const LANGUAGES = ['en', 'es', 'zh', 'vi', 'fr', 'ar'];
const STATES = ['CA', 'NY', 'TX', 'FL', 'WA', 'IL', 'MA', 'OR'];
const TAGS = ['vip', 'post-op', 'new', 'high-utilizer', 'hospice', 'transport'];
const WORDS = ['refill', 'appointment', 'pain', 'insurance', 'bill', 'thanks', 'hola', 'glucose', 'reading', 'pharmacy', 'ride', 'question'];
const PATTERNS = ['\\brefill(s|ed)?\\b', 'chest\\s+pain', '^(hi|hello|hola)\\b', '\\d{2,3}\\s*mg/dl', 'can.?t\\s+breathe', 'suicid', '\\bbill(ing)?\\b', 'appoint(ment)?s?\\b'];
const TEAMS = Array.from({ length: 10 }, (_, i) => `team-${i}`);
const coordinatorIds = Array.from({ length: COORDINATORS }, (_, i) => `c${String(i).padStart(3, '0')}`);

function leaf(): Condition {
  switch (Math.floor(random() * 10)) {
    case 0:
      return { fact: 'patient.program', op: 'eq', value: pick(PROGRAMS) };
    case 1:
      return { fact: 'patient.language', op: 'in', value: some(LANGUAGES, 2) };
    case 2:
      return { fact: 'patient.state', op: 'not_in', value: some(STATES, 3) };
    case 3:
      return { fact: 'patient.riskTier', op: 'gte', value: 1 + Math.floor(random() * 4) };
    case 4:
      return { fact: 'patient.tags', op: 'contains', value: pick(TAGS) };
    case 5:
      return { fact: 'message.text', op: 'contains', value: pick(WORDS) };
    case 6:
    case 7:
      return { fact: 'message.text', op: 'matches', value: pick(PATTERNS) };
    case 8:
      return { fact: 'message.channel', op: 'eq', value: pick(['sms', 'whatsapp', 'messenger', 'email']) };
    default:
      return { not: { fact: 'time', op: 'within_hours', value: { team: pick(TEAMS) } } };
  }
}

function conditions(): Condition {
  // Selective tests first, as authors write them (a program and a language), then details, often nested.
  const head: Condition[] = [
    { fact: 'patient.program', op: 'eq', value: pick(PROGRAMS) },
    { fact: 'patient.language', op: 'eq', value: pick(LANGUAGES) },
  ];
  const rest: Condition[] = Array.from({ length: 1 + Math.floor(random() * 3) }, () =>
    random() < 0.3 ? { any: [leaf(), { all: [leaf(), leaf()] }] } : leaf(),
  );
  const alternative: Condition = { all: [{ fact: 'patient.tags', op: 'contains', value: pick(TAGS) }, { fact: 'message.text', op: 'matches', value: pick(PATTERNS) }, leaf()] };
  return random() < 0.2 ? { any: [{ all: [...head, ...rest] }, alternative] } : { all: [...head, ...rest] };
}

function target(): Target {
  const r = random();
  if (r < 0.2) return { kind: 'coordinator', coordinatorId: pick(coordinatorIds) };
  if (r < 0.3) return { kind: 'sticky' };
  return { kind: 'team', teamId: pick(TEAMS), strategy: pick(['round_robin', 'least_loaded', 'longest_idle'] as const), requiredSkills: random() < 0.3 ? [pick(LANGUAGES)] : [] };
}

const weekdays = { start: '08:00', end: '18:00' };
const input = {
  version: 1,
  teams: TEAMS.map((id, i) => ({
    id,
    timeZone: pick(['America/New_York', 'America/Chicago', 'America/Los_Angeles', 'Europe/London']),
    weeklyHours: { mon: [weekdays], tue: [weekdays], wed: [weekdays], thu: [weekdays], fri: [weekdays], ...(i % 3 === 0 ? { sat: [{ start: '09:00', end: '13:00' }] } : {}) },
    holidays: ['2026-01-01', '2026-07-03', '2026-11-26', '2026-12-25'],
  })),
  rules: Array.from({ length: RULES }, (_, i) => ({
    id: `rule-${i}`,
    name: `Rule ${i}`,
    enabled: random() < 0.95,
    conditions: conditions(),
    target: target(),
    overrideAssignment: random() < 0.3,
    fallbacks: [{ target: { kind: 'team' as const, teamId: pick(TEAMS), strategy: 'least_loaded' as const }, afterMinutes: pick([0, 15, 30]) }],
    actions: random() < 0.3 ? [{ type: 'auto_reply' as const, text: 'We will reply soon. In an emergency call 911.', minIntervalMinutes: 240 }] : [],
  })),
  defaultRule: { target: { kind: 'team' as const, teamId: 'team-0', strategy: 'least_loaded' as const }, queueTeamId: 'team-0' },
};

const validateStart = performance.now();
const validated = validateRuleSet(input, { coordinatorIds, teamIds: TEAMS });
const validateMs = performance.now() - validateStart;
if (!validated.ok) throw new Error(`bench rule set is invalid: ${JSON.stringify(validated.errors.slice(0, 5))}`);
const compileStart = performance.now();
const compiled = compileRuleSet(validated.ruleSet);
const compileMs = performance.now() - compileStart;

const base = Date.parse('2026-03-02T00:00:00Z');
const coordinators: CoordinatorFact[] = coordinatorIds.map((id, i) => ({
  id,
  status: random() < 0.8 ? 'available' : pick(['away', 'out_of_office'] as const),
  load: Math.floor(random() * 8),
  capacity: 6,
  skills: some(['insulin', 'wound-care', 'peds'], 1),
  languages: ['en', ...(random() < 0.4 ? [pick(LANGUAGES)] : [])],
  teamIds: [TEAMS[i % TEAMS.length]!, ...(random() < 0.3 ? [pick(TEAMS)] : [])],
  lastAssignedAt: new Date(base - Math.floor(random() * 86_400_000)).toISOString(),
  idleSince: random() < 0.5 ? new Date(base - Math.floor(random() * 86_400_000)).toISOString() : null,
  fallbackTarget: random() < 0.5 ? { kind: 'team', teamId: pick(TEAMS), strategy: 'round_robin' } : null,
  returnWhenBack: random() < 0.5,
}));

const factSets: Array<{ facts: RoutingFacts; now: Date }> = Array.from({ length: FACT_SETS }, () => ({
  facts: {
    patient: {
      id: 'p',
      program: pick(PROGRAMS),
      language: pick(LANGUAGES),
      state: pick(STATES),
      timeZone: 'America/New_York',
      riskTier: Math.floor(random() * 5),
      tags: some(TAGS, Math.floor(random() * 3)),
      attributes: { plan: pick(['gold', 'silver', 'bronze']) },
      currentCoordinatorId: random() < 0.6 ? pick(coordinatorIds) : null,
    },
    message: { text: some(WORDS, 3 + Math.floor(random() * 12)).join(' '), channel: pick(['sms', 'whatsapp', 'messenger', 'email']), hasMedia: random() < 0.1 },
    coordinators,
    conversation: { lastAutoReplyAt: random() < 0.3 ? new Date(base - 3_600_000).toISOString() : null },
  },
  // Spread over a week so business hours are computed across zones, days and minutes.
  now: new Date(base + Math.floor(random() * 7 * 86_400_000)),
}));

export interface RoutingBenchResult {
  rules: number;
  coordinators: number;
  decisions: number;
  seconds: number;
  perSecond: number;
  validateMs: number;
  compileMs: number;
  rulesPerDecision: number;
  defaultedPct: number;
  queuedPct: number;
}

/** Routing decisions per second on this core, for 200 rules and 100 coordinators (used by bench/run.ts too). */
export function benchRouting(seconds = SECONDS): RoutingBenchResult {
  // Warm up the JIT, then measure.
  for (let i = 0; i < 20_000; i++) {
    const s = factSets[i % FACT_SETS]!;
    routeMessage(compiled, s.facts, s.now);
  }

  let decisions = 0;
  let rulesEvaluated = 0;
  let queued = 0;
  let defaulted = 0;
  const start = performance.now();
  const deadline = start + seconds * 1000;
  while (performance.now() < deadline) {
    for (let i = 0; i < 1000; i++) {
      const s = factSets[(decisions + i) % FACT_SETS]!;
      const decision = routeMessage(compiled, s.facts, s.now);
      rulesEvaluated += decision.explanation.rulesEvaluated;
      if (decision.assignment.kind === 'queue') queued++;
      if (decision.ruleId === 'default') defaulted++;
    }
    decisions += 1000;
  }
  const elapsedS = (performance.now() - start) / 1000;
  return {
    rules: RULES,
    coordinators: COORDINATORS,
    decisions,
    seconds: elapsedS,
    perSecond: decisions / elapsedS,
    validateMs,
    compileMs,
    rulesPerDecision: rulesEvaluated / decisions,
    defaultedPct: (100 * defaulted) / decisions,
    queuedPct: (100 * queued) / decisions,
  };
}

export function printRoutingBench(r: RoutingBenchResult): void {
  console.log(`routing: ${r.rules} rules, ${r.coordinators} coordinators, ${FACT_SETS} distinct messages`);
  console.log(`  validate ${r.validateMs.toFixed(1)} ms, compile ${r.compileMs.toFixed(1)} ms`);
  console.log(`  ${r.decisions} decisions in ${r.seconds.toFixed(2)} s → ${Math.round(r.perSecond).toLocaleString('en-US')} decisions/s (${(1e6 / r.perSecond).toFixed(2)} µs each)`);
  console.log(`  rules tested per decision ${r.rulesPerDecision.toFixed(1)}, default rule ${r.defaultedPct.toFixed(1)}%, queued ${r.queuedPct.toFixed(1)}%`);
  console.log(`  target ≥ 100,000/s: ${r.perSecond >= 100_000 ? 'met' : 'NOT met'}`);
}

// Run directly (node --import tsx bench/routing.ts), not when imported by bench/run.ts.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) printRoutingBench(benchRouting());
