/**
 * Alert rules are data: one JSON document of rules and notification targets, validated with zod (every
 * problem listed), stored as numbered versions; the newest stored version is active.
 */
import { checkTargetUrl, maskUrl } from './alert-target-url.ts';
import { z } from 'zod';
import type { Db, Queryable } from '../db/db.ts';

const Id = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'use lowercase letters, digits, - and _');
const common = {
  id: Id,
  description: z.string().max(500).optional(),
  severity: z.enum(['info', 'warning', 'page']).default('warning'),
  /** The condition must hold this long (pending) before the alert fires. */
  forMinutes: z.number().min(0).max(1440).default(0),
  /** A firing, unacknowledged alert is re-notified at most this often. */
  repeatMinutes: z.number().min(1).max(10080).default(60),
  /** Names of targets in `targets`. */
  notify: z.array(Id).default([]),
  enabled: z.boolean().default(true),
};

export const AlertRuleSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    ...common,
    kind: z.literal('patient_wait'),
    /** Fires when the wait counted on the patient's team's business clock reaches this … */
    businessMinutes: z.number().positive().max(10080).default(15),
    /** … or the wall-clock wait reaches this (so nights and weekends still page, later). */
    wallMinutes: z.number().positive().max(10080).default(120),
  }),
  z.strictObject({
    ...common,
    kind: z.literal('delivery_failure_rate'),
    windowMinutes: z.number().positive().max(1440).default(10),
    thresholdPercent: z.number().min(0).max(100).default(5),
    /** Fewer final outcomes than this in the window say nothing (1 failure of 1 is not 100 %). */
    minMessages: z.number().int().min(1).default(20),
  }),
  z.strictObject({
    ...common,
    kind: z.literal('outbox_oldest'),
    thresholdSeconds: z.number().positive().max(86400).default(60),
  }),
  z.strictObject({
    ...common,
    kind: z.literal('webhook_silence'),
    /** "Longer than usual": silent for more than `factor` × the 95th-percentile gap between inbound messages … */
    factor: z.number().min(1).max(100).default(3),
    lookbackDays: z.number().int().min(1).max(90).default(7),
    /** … and never less than this … */
    minMinutes: z.number().positive().default(30),
    /** … and only for channels with at least this many inbound messages in the lookback. */
    minMessages: z.number().int().min(2).default(20),
  }),
  z.strictObject({
    ...common,
    kind: z.literal('coordinator_over_capacity'),
  }),
]);
export type AlertRule = z.output<typeof AlertRuleSchema>;

export const TargetSchema = z.discriminatedUnion('type', [
  /** Slack-compatible incoming webhook: POST {"text": …}. */
  z.strictObject({ type: z.literal('slack'), url: z.url() }),
  /** Generic JSON webhook signed with ALERT_WEBHOOK_SECRET: X-Switchboard-Signature: sha256=<hex HMAC of body>. */
  z.strictObject({ type: z.literal('webhook'), url: z.url() }),
  z.strictObject({ type: z.literal('email'), to: z.array(z.email()).min(1) }),
  /** SMS to an on-call number through the configured SMS channel adapter. */
  z.strictObject({ type: z.literal('sms'), to: z.string().regex(/^\+[1-9]\d{6,14}$/, 'an E.164 number') }),
]);
export type Target = z.output<typeof TargetSchema>;

export const AlertRulesDocumentSchema = z
  .strictObject({
    rules: z.array(AlertRuleSchema).max(200),
    targets: z.record(Id, TargetSchema).default({}),
  })
  .superRefine((doc, ctx) => {
    for (const issue of crossReferenceProblems(doc)) ctx.addIssue({ code: 'custom', ...issue });
  });
export type AlertRulesDocument = z.output<typeof AlertRulesDocumentSchema>;

/** Duplicate rule ids and unknown targets; read leniently so they are reported even beside shape errors. */
function crossReferenceProblems(input: unknown): Array<{ path: Array<string | number>; message: string }> {
  const doc = (input ?? {}) as { rules?: unknown; targets?: unknown };
  const rules = Array.isArray(doc.rules) ? (doc.rules as Array<{ id?: unknown; notify?: unknown } | null>) : [];
  const targets = doc.targets && typeof doc.targets === 'object' ? (doc.targets as Record<string, unknown>) : {};
  const problems: Array<{ path: Array<string | number>; message: string }> = [];
  const seen = new Set<unknown>();
  rules.forEach((rule, index) => {
    if (!rule || typeof rule !== 'object') return;
    if (typeof rule.id === 'string' && seen.has(rule.id)) problems.push({ path: ['rules', index, 'id'], message: `duplicate rule id ${rule.id}` });
    seen.add(rule.id);
    if (!Array.isArray(rule.notify)) return;
    rule.notify.forEach((name: unknown, n: number) => {
      if (typeof name === 'string' && !Object.hasOwn(targets, name)) problems.push({ path: ['rules', index, 'notify', n], message: `no target named ${name}` });
    });
  });
  return problems;
}

export type ValidationResult = { ok: true; document: AlertRulesDocument } | { ok: false; errors: Array<{ path: string; message: string }> };

export interface AlertRulesOptions {
  /** ALERT_TARGETS_ALLOW_PRIVATE: loopback and private target addresses are allowed. */
  allowPrivateTargets?: boolean;
}

export function validateAlertRules(input: unknown, options: AlertRulesOptions = {}): ValidationResult {
  const parsed = AlertRulesDocumentSchema.safeParse(input);
  if (parsed.success) {
    const refused = Object.entries(parsed.data.targets).flatMap(([name, target]) => {
      const problem = 'url' in target ? checkTargetUrl(target.url, options.allowPrivateTargets === true) : null;
      return problem ? [{ path: `targets.${name}.url`, message: problem }] : [];
    });
    return refused.length === 0 ? { ok: true, document: parsed.data } : { ok: false, errors: refused };
  }
  const issues = parsed.error.issues.map((issue) => ({ path: issue.path.join('.'), message: issue.message }));
  // zod skips refinements when shapes fail; add the cross-references so every problem is listed at once.
  const seen = new Set(issues.map((i) => `${i.path}\u0000${i.message}`));
  for (const problem of crossReferenceProblems(input)) {
    const issue = { path: problem.path.join('.'), message: problem.message };
    if (!seen.has(`${issue.path}\u0000${issue.message}`)) issues.push(issue);
  }
  return { ok: false, errors: issues };
}

/** What runs before anyone stores a document: the issue's five examples, shown as banners only. */
export const DEFAULT_ALERT_RULES: AlertRulesDocument = AlertRulesDocumentSchema.parse({
  rules: [
    { id: 'patient-wait', kind: 'patient_wait', severity: 'page', businessMinutes: 15, wallMinutes: 120 },
    { id: 'delivery-failures', kind: 'delivery_failure_rate', windowMinutes: 10, thresholdPercent: 5 },
    { id: 'outbox-stuck', kind: 'outbox_oldest', thresholdSeconds: 60 },
    { id: 'webhook-silence', kind: 'webhook_silence' },
    { id: 'coordinator-over-capacity', kind: 'coordinator_over_capacity' },
  ],
  targets: {},
});

export interface ActiveRules {
  version: number | null;
  document: AlertRulesDocument;
}

export async function loadActiveAlertRules(db: Queryable): Promise<ActiveRules> {
  const found = await db.query<{ version: number; document: unknown }>(`SELECT version, document FROM alert_rule_versions ORDER BY version DESC LIMIT 1`);
  const row = found.rows[0];
  if (!row) return { version: null, document: DEFAULT_ALERT_RULES };
  return { version: row.version, document: AlertRulesDocumentSchema.parse(row.document) };
}

export async function listAlertRuleVersions(db: Queryable): Promise<Array<{ version: number; createdBy: string | null; createdAt: Date }>> {
  const found = await db.query<{ version: number; created_by: string | null; created_at: Date }>(
    `SELECT version, created_by, created_at FROM alert_rule_versions ORDER BY version DESC LIMIT 100`,
  );
  return found.rows.map((row) => ({ version: row.version, createdBy: row.created_by, createdAt: row.created_at }));
}

/** Validates then stores a new version. Invalid → nothing written; the active version is unchanged. */
export async function saveAlertRules(db: Db, input: unknown, createdBy: string | null, options: AlertRulesOptions = {}): Promise<ValidationResult & { version?: number }> {
  const result = validateAlertRules(input, options);
  if (!result.ok) return result;
  const version = await db.transaction(async (tx) => {
    // The table lock makes concurrent saves take consecutive numbers instead of failing on the key.
    await tx.query(`LOCK TABLE alert_rule_versions IN EXCLUSIVE MODE`);
    const next = await tx.query<{ v: number }>(`SELECT COALESCE(max(version), 0) + 1 AS v FROM alert_rule_versions`);
    const v = next.rows[0]!.v;
    await tx.query(`INSERT INTO alert_rule_versions (version, document, created_by) VALUES ($1, $2, $3)`, [v, JSON.stringify(result.document), createdBy]);
    return v;
  });
  return { ...result, version };
}

/** The document as a non-admin may see it: slack/webhook URLs masked, since their path is the secret. */
export function maskAlertRulesDocument(document: AlertRulesDocument): AlertRulesDocument {
  const targets = Object.fromEntries(Object.entries(document.targets).map(([name, target]) => [name, 'url' in target ? { ...target, url: maskUrl(target.url) } : target]));
  return { ...document, targets };
}
