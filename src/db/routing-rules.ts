/**
 * Routing rule sets in the database: every accepted change is a new version (author, time, comment), the newest
 * version is the active one, and a rejected rule set is never written, so the previous version stays active.
 */
import {
  compileRuleSet,
  RuleSetSchema,
  validateRuleSet,
  type CompiledRuleSet,
  type RuleSet,
  type RuleSetInput,
  type TeamSchedule,
  type ValidationError,
} from '../core/routing/index.ts';
import type { Db, Queryable } from './db.ts';

/** Every coordinator with role `coordinator` belongs to it implicitly (migration 0003). */
export const EVERYONE_TEAM_ID = '00000000-0000-4000-8000-00000000e001';

/** Routing before an admin stores rules: the least-loaded available coordinator, as the spine did. */
export const BUILT_IN_RULE_SET: RuleSetInput = {
  rules: [],
  defaultRule: {
    name: 'Built-in: least loaded available coordinator',
    target: { kind: 'team', teamId: EVERYONE_TEAM_ID, strategy: 'least_loaded' },
    queueTeamId: EVERYONE_TEAM_ID,
  },
};

// Serialises version numbering, so two admins saving at once get versions n+1 and n+2, never a conflict.
const RULE_SET_LOCK = 0x5b0a_0004;

export interface DbTeam {
  id: string;
  name: string;
  schedule: TeamSchedule;
}

const WEEKDAY_KEYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;

/**
 * The teams table keeps hours as `{"mon": [["09:00","17:00"]]}` and "empty = always open"; the routing core
 * wants `{mon: [{start, end}]}` where empty means closed, so an empty table entry becomes every day, all day.
 */
export function scheduleOfDbTeam(row: { timezone: string; business_hours: unknown; holidays: unknown }): TeamSchedule {
  const hours = (row.business_hours ?? {}) as Record<string, unknown>;
  const weeklyHours: TeamSchedule['weeklyHours'] = {};
  const empty = Object.keys(hours).length === 0;
  for (const day of WEEKDAY_KEYS) {
    if (empty) {
      weeklyHours[day] = [{ start: '00:00', end: '24:00' }];
      continue;
    }
    const intervals = hours[day];
    if (!Array.isArray(intervals)) continue;
    weeklyHours[day] = intervals.flatMap((i: unknown) =>
      Array.isArray(i) && typeof i[0] === 'string' && typeof i[1] === 'string' ? [{ start: i[0], end: i[1] }] : [],
    );
  }
  return { timeZone: row.timezone, weeklyHours, holidays: Array.isArray(row.holidays) ? (row.holidays as string[]) : [] };
}

export async function loadTeams(db: Queryable): Promise<DbTeam[]> {
  const result = await db.query<{ id: string; name: string; timezone: string; business_hours: unknown; holidays: unknown }>(
    `SELECT id, name, timezone, business_hours, holidays FROM teams ORDER BY id`,
  );
  return result.rows.map((row) => ({ id: row.id, name: row.name, schedule: scheduleOfDbTeam(row) }));
}

/**
 * A rule set may list team schedules itself; teams it does not list get their hours from the teams table, so
 * `within_hours` follows an edit of a team's hours or holidays without a new rule version.
 */
function withDbTeams(input: unknown, teams: readonly DbTeam[]): unknown {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return input;
  const record = input as Record<string, unknown>;
  const listed = Array.isArray(record.teams) ? record.teams : [];
  const listedIds = new Set(listed.map((t) => (typeof t === 'object' && t !== null ? (t as { id?: unknown }).id : undefined)));
  const added = teams.filter((t) => !listedIds.has(t.id)).map((t) => ({ id: t.id, name: t.name, ...t.schedule }));
  return { ...record, teams: [...listed, ...added] };
}

async function validationContextTeams(db: Queryable): Promise<{ coordinatorIds: string[]; teams: DbTeam[] }> {
  const coordinators = await db.query<{ id: string }>(`SELECT id FROM coordinators WHERE role = 'coordinator'`);
  return { coordinatorIds: coordinators.rows.map((r) => r.id), teams: await loadTeams(db) };
}

export type ValidateOutcome = { ok: true; ruleSet: RuleSet } | { ok: false; errors: ValidationError[] };

/** Checks a rule set against the coordinators and teams that exist now; every problem is listed. */
export async function checkRuleSet(db: Queryable, input: unknown): Promise<ValidateOutcome> {
  const { coordinatorIds, teams } = await validationContextTeams(db);
  const stripped = stripVersion(input);
  return validateRuleSet(withDbTeams(stripped, teams), { coordinatorIds, teamIds: teams.map((t) => t.id) });
}

/** The version is assigned by storage; an exported file carries one, which import ignores. */
function stripVersion(input: unknown): unknown {
  if (typeof input !== 'object' || input === null || Array.isArray(input) || !('version' in input)) return input;
  const { version: _ignored, ...rest } = input as Record<string, unknown>;
  return rest;
}

export interface RuleSetVersion {
  version: number;
  ruleSet: unknown;
  authorId: string | null;
  comment: string | null;
  createdAt: Date;
}

type RuleSetRow = { version: number; rule_set: unknown; author_id: string | null; comment: string | null; created_at: Date };
const toVersion = (row: RuleSetRow): RuleSetVersion => ({
  version: row.version,
  ruleSet: row.rule_set,
  authorId: row.author_id,
  comment: row.comment,
  createdAt: row.created_at,
});

/** Validates and, only when valid, stores the rule set as the newest (active) version. */
export async function saveRuleSet(
  db: Db,
  args: { input: unknown; authorId: string; comment?: string | null },
): Promise<{ ok: true; version: RuleSetVersion } | { ok: false; errors: ValidationError[] }> {
  return db.transaction(async (tx) => {
    await tx.query(`SELECT pg_advisory_xact_lock($1)`, [RULE_SET_LOCK]);
    const checked = await checkRuleSet(tx, args.input);
    if (!checked.ok) return { ok: false as const, errors: checked.errors };
    const inserted = await tx.query<RuleSetRow>(
      `INSERT INTO routing_rule_sets (version, rule_set, author_id, comment)
       VALUES ((SELECT COALESCE(max(version), 0) + 1 FROM routing_rule_sets), $1, $2, $3) RETURNING *`,
      [JSON.stringify(stripVersion(args.input)), args.authorId, args.comment ?? null],
    );
    return { ok: true as const, version: toVersion(inserted.rows[0]!) };
  });
}

export async function listRuleSetVersions(db: Queryable): Promise<Array<Omit<RuleSetVersion, 'ruleSet'> & { rules: number }>> {
  const result = await db.query<RuleSetRow & { rules: number }>(
    `SELECT version, author_id, comment, created_at, jsonb_array_length(COALESCE(rule_set->'rules', '[]'::jsonb)) AS rules
     FROM routing_rule_sets ORDER BY version DESC`,
  );
  return result.rows.map((row) => ({ version: row.version, authorId: row.author_id, comment: row.comment, createdAt: row.created_at, rules: Number(row.rules) }));
}

export async function getRuleSetVersion(db: Queryable, version: number): Promise<RuleSetVersion | null> {
  const result = await db.query<RuleSetRow>(`SELECT * FROM routing_rule_sets WHERE version = $1`, [version]);
  return result.rows[0] ? toVersion(result.rows[0]) : null;
}

export async function latestRuleSetVersion(db: Queryable): Promise<RuleSetVersion | null> {
  const result = await db.query<RuleSetRow>(`SELECT * FROM routing_rule_sets ORDER BY version DESC LIMIT 1`);
  return result.rows[0] ? toVersion(result.rows[0]) : null;
}

export interface ActiveRules {
  /** null: nothing stored yet, the built-in rule set applies. */
  version: number | null;
  ruleSet: RuleSet;
  compiled: CompiledRuleSet;
}

// Compiling 200 rules takes milliseconds; a decision takes microseconds. Keyed by version, content and the teams' hours.
let cached: { key: string; active: ActiveRules } | null = null;

/**
 * The rules routing uses now. A stored version that no longer validates (say a coordinator it names was
 * deleted) still routes: the engine treats unknown coordinators as unavailable and queues.
 */
export async function loadActiveRules(db: Queryable): Promise<ActiveRules> {
  const [latest, teams] = await Promise.all([
    db.query<{ version: number; digest: string }>(`SELECT version, md5(rule_set::text) AS digest FROM routing_rule_sets ORDER BY version DESC LIMIT 1`),
    loadTeams(db),
  ]);
  const version = latest.rows[0]?.version ?? null;
  // The digest keeps two databases in one process (tests, bench) from sharing a cached version number.
  const key = `${version}|${latest.rows[0]?.digest ?? ''}|${JSON.stringify(teams)}`;
  if (cached?.key === key) return cached.active;
  const stored = version === null ? BUILT_IN_RULE_SET : (await getRuleSetVersion(db, version))?.ruleSet;
  const parsed = RuleSetSchema.safeParse(withDbTeams(stripVersion(stored), teams));
  const ruleSet: RuleSet = parsed.success ? { ...parsed.data, version: version ?? undefined } : RuleSetSchema.parse(withDbTeams(BUILT_IN_RULE_SET, teams));
  const active: ActiveRules = { version, ruleSet, compiled: compileRuleSet(ruleSet) };
  cached = { key, active };
  return active;
}
