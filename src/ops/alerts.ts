/**
 * The built-in alert evaluator: turns the active rules into conditions (read from the database as of an
 * injected `now`), then moves each alert through its persisted lifecycle pending → firing → resolved.
 * Every transition is one conditional UPDATE plus its notification rows in one transaction, so two
 * evaluators racing each other still produce each transition once (the scheduler also elects one leader).
 */
import type { Db, Queryable } from '../db/db.ts';
import { alertVisibleSql, type Viewer } from '../db/visibility.ts';
import { loadActiveAlertRules, type AlertRule, type AlertRulesDocument } from './alert-rules.ts';
import { openMsBetween, teamSchedule } from './clock.ts';

export interface Condition {
  subject: string;
  summary: string;
  value: number;
  patientId?: string;
  coordinatorId?: string;
  teamId?: string;
}

export type TransitionKind = 'firing' | 'repeat' | 'resolved';

export interface EvaluationResult {
  ruleVersion: number | null;
  transitions: Array<{ alertId: string; ruleId: string; subject: string; kind: TransitionKind }>;
}

const minutes = (ms: number) => Math.round(ms / 60_000);

/** Conditions that hold for one rule at `now`. Exported for tests and the rules dry-run. */
export async function evaluateRule(db: Queryable, rule: AlertRule, now: Date): Promise<Condition[]> {
  const at = now.toISOString();
  switch (rule.kind) {
    case 'patient_wait': {
      const [waiting, teams] = await Promise.all([
        db.query<{ id: string; waiting_since: Date; coordinator_id: string | null; team_id: string | null }>(
          `SELECT p.id, p.waiting_since, a.coordinator_id,
                  COALESCE(a.team_id, (SELECT m.team_id FROM team_members m WHERE m.coordinator_id = a.coordinator_id ORDER BY m.team_id LIMIT 1)) AS team_id
           FROM patients p LEFT JOIN assignments a ON a.patient_id = p.id
           WHERE p.waiting_since IS NOT NULL AND p.waiting_since <= $1::timestamptz - make_interval(secs => $2)`,
          [at, Math.min(rule.businessMinutes, rule.wallMinutes) * 60],
        ),
        db.query<{ id: string; name: string; timezone: string; business_hours: unknown; holidays: unknown }>(`SELECT id, name, timezone, business_hours, holidays FROM teams`),
      ]);
      const schedules = new Map(teams.rows.map((t) => [t.id, { name: t.name, schedule: teamSchedule(t) }]));
      const conditions: Condition[] = [];
      for (const row of waiting.rows) {
        const wallMs = now.getTime() - row.waiting_since.getTime();
        const team = row.team_id ? schedules.get(row.team_id) : undefined;
        const common = { subject: `patient:${row.id}`, patientId: row.id, coordinatorId: row.coordinator_id ?? undefined, teamId: row.team_id ?? undefined };
        if (wallMs >= rule.wallMinutes * 60_000) {
          conditions.push({ ...common, value: wallMs / 1000, summary: `patient ${row.id} has waited ${minutes(wallMs)} min (wall clock)` });
          continue;
        }
        const businessMs = openMsBetween(team?.schedule ?? null, row.waiting_since.getTime(), now.getTime());
        if (businessMs >= rule.businessMinutes * 60_000) {
          const clock = team?.schedule ? `business hours of ${team.name}` : 'always open';
          conditions.push({ ...common, value: businessMs / 1000, summary: `patient ${row.id} has waited ${minutes(businessMs)} min (${clock})` });
        }
      }
      return conditions;
    }
    case 'delivery_failure_rate': {
      const found = await db.query<{ failed: number; total: number }>(
        `SELECT count(*) FILTER (WHERE status IN ('failed', 'undelivered'))::int AS failed, count(*)::int AS total
         FROM messages WHERE direction = 'outbound' AND status IN ('delivered', 'read', 'failed', 'undelivered')
           AND status_updated_at > $1::timestamptz - make_interval(secs => $2) AND status_updated_at <= $1::timestamptz`,
        [at, rule.windowMinutes * 60],
      );
      const { failed = 0, total = 0 } = found.rows[0] ?? {};
      if (total < rule.minMessages) return [];
      const percent = (100 * failed) / total;
      return percent > rule.thresholdPercent
        ? [{ subject: 'delivery', value: percent, summary: `${percent.toFixed(1)}% of ${total} outbound messages failed in the last ${rule.windowMinutes} min` }]
        : [];
    }
    case 'outbox_oldest': {
      const found = await db.query<{ age: number | null; depth: number }>(
        `SELECT EXTRACT(EPOCH FROM ($1::timestamptz - min(created_at)))::float8 AS age, count(*)::int AS depth FROM outbox WHERE state IN ('pending', 'sending')`,
        [at],
      );
      const age = found.rows[0]?.age ?? 0;
      return age > rule.thresholdSeconds
        ? [{ subject: 'outbox', value: age, summary: `the oldest undelivered outbound message is ${Math.round(age)} s old (${found.rows[0]?.depth} waiting)` }]
        : [];
    }
    case 'webhook_silence': {
      const found = { rows: await channelInboundStats(db, now, rule.lookbackDays) };
      return found.rows
        .filter((row) => row.n >= rule.minMessages && row.silent > Math.max(rule.minMinutes * 60, rule.factor * (row.p95 ?? 0)))
        .map((row) => ({
          subject: `channel:${row.channel}`,
          value: row.silent,
          summary: `no inbound ${row.channel} for ${minutes(row.silent * 1000)} min; usually at most ${minutes((row.p95 ?? 0) * 1000)} min between messages`,
        }));
    }
    case 'coordinator_over_capacity': {
      const found = await db.query<{ id: string; name: string; capacity: number; assigned: number }>(
        `SELECT c.id, c.name, c.capacity, count(*)::int AS assigned FROM coordinators c JOIN assignments a ON a.coordinator_id = c.id
         GROUP BY c.id, c.name, c.capacity HAVING count(*) > c.capacity`,
      );
      return found.rows.map((row) => ({
        subject: `coordinator:${row.id}`,
        coordinatorId: row.id,
        value: row.assigned,
        summary: `${row.name} has ${row.assigned} patients, above their capacity of ${row.capacity}`,
      }));
    }
  }
}

export interface ChannelInboundStats {
  channel: string;
  /** Inbound messages in the lookback. */
  n: number;
  /** Seconds since the channel's last inbound message in the lookback. */
  silent: number;
  /** 95th percentile of the gaps between consecutive inbound messages in the lookback; null with one message. */
  p95: number | null;
}

/**
 * What "longer than usual" is measured against, per channel, over `lookbackDays` before `now`. One query for the
 * built-in webhook_silence rule and the /metrics gauges the Prometheus rule reads, so both decide alike.
 */
export async function channelInboundStats(db: Queryable, now: Date, lookbackDays: number): Promise<ChannelInboundStats[]> {
  const found = await db.query<ChannelInboundStats>(
    `WITH inbound AS (
       SELECT channel, created_at, EXTRACT(EPOCH FROM created_at - lag(created_at) OVER (PARTITION BY channel ORDER BY created_at)) AS gap
       FROM messages WHERE direction = 'inbound' AND created_at > $1::timestamptz - make_interval(days => $2) AND created_at <= $1::timestamptz
     )
     SELECT channel, count(*)::int AS n, EXTRACT(EPOCH FROM ($1::timestamptz - max(created_at)))::float8 AS silent,
            (percentile_cont(0.95) WITHIN GROUP (ORDER BY gap))::float8 AS p95
     FROM inbound GROUP BY channel ORDER BY channel`,
    [now.toISOString(), lookbackDays],
  );
  return found.rows;
}

interface OpenAlert {
  id: string;
  rule_id: string;
  subject: string;
  state: 'pending' | 'firing';
  started_at: Date;
  last_notified_at: Date | null;
  acknowledged_at: Date | null;
}

/** One evaluation pass at `now`. Safe to run concurrently: each transition happens once. */
export async function evaluateAlerts(db: Db, options: { now: Date; rules?: { version: number | null; document: AlertRulesDocument } }): Promise<EvaluationResult> {
  const { now } = options;
  const active = options.rules ?? (await loadActiveAlertRules(db));
  const result: EvaluationResult = { ruleVersion: active.version, transitions: [] };
  const open = await db.query<OpenAlert>(`SELECT id, rule_id, subject, state, started_at, last_notified_at, acknowledged_at FROM alerts WHERE state <> 'resolved'`);
  const openByKey = new Map(open.rows.map((a) => [`${a.rule_id}\u0000${a.subject}`, a]));
  const liveRules = new Set<string>();

  for (const rule of active.document.rules) {
    if (!rule.enabled) continue;
    liveRules.add(rule.id);
    const conditions = await evaluateRule(db, rule, now);
    const holding = new Set<string>();
    for (const condition of conditions) {
      holding.add(condition.subject);
      const alert = openByKey.get(`${rule.id}\u0000${condition.subject}`);
      const transition = await advance(db, rule, active.version, condition, alert, now);
      if (transition) result.transitions.push({ ...transition, ruleId: rule.id, subject: condition.subject });
    }
    for (const alert of open.rows) {
      if (alert.rule_id !== rule.id || holding.has(alert.subject)) continue;
      const resolved = await resolve(db, alert, now, rule.notify);
      if (resolved) result.transitions.push({ alertId: alert.id, ruleId: rule.id, subject: alert.subject, kind: 'resolved' });
    }
  }
  // Alerts of rules that were removed or disabled end, without notifications (their targets may be gone too).
  for (const alert of open.rows) {
    if (liveRules.has(alert.rule_id)) continue;
    const resolved = await resolve(db, alert, now, []);
    if (resolved) result.transitions.push({ alertId: alert.id, ruleId: alert.rule_id, subject: alert.subject, kind: 'resolved' });
  }
  return result;
}

async function advance(
  db: Db,
  rule: AlertRule,
  version: number | null,
  condition: Condition,
  alert: OpenAlert | undefined,
  now: Date,
): Promise<{ alertId: string; kind: TransitionKind } | null> {
  const forMs = rule.forMinutes * 60_000;
  return db.transaction(async (tx) => {
    if (!alert) {
      const firing = forMs === 0;
      const inserted = await tx.query<{ id: string }>(
        `INSERT INTO alerts (rule_id, rule_version, subject, state, severity, summary, value, patient_id, coordinator_id, team_id, started_at, firing_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, CASE WHEN $4 = 'firing' THEN $11::timestamptz END)
         ON CONFLICT (rule_id, subject) WHERE state <> 'resolved' DO NOTHING RETURNING id`,
        [rule.id, version, condition.subject, firing ? 'firing' : 'pending', rule.severity, condition.summary, condition.value, condition.patientId ?? null, condition.coordinatorId ?? null, condition.teamId ?? null, now.toISOString()],
      );
      const id = inserted.rows[0]?.id;
      if (!id || !firing) return null;
      await recordTransition(tx, id, 'firing', now, condition.summary, rule.notify);
      return { alertId: id, kind: 'firing' as const };
    }
    await tx.query(`UPDATE alerts SET summary = $2, value = $3 WHERE id = $1`, [alert.id, condition.summary, condition.value]);
    if (alert.state === 'pending') {
      if (now.getTime() - alert.started_at.getTime() < forMs) return null;
      const fired = await tx.query(`UPDATE alerts SET state = 'firing', firing_at = $2 WHERE id = $1 AND state = 'pending'`, [alert.id, now.toISOString()]);
      if (fired.rowCount === 0) return null;
      await recordTransition(tx, alert.id, 'firing', now, condition.summary, rule.notify);
      return { alertId: alert.id, kind: 'firing' as const };
    }
    // Firing: repeat at most every repeatMinutes, and never once a supervisor has acknowledged it.
    if (alert.acknowledged_at || !alert.last_notified_at) return null;
    if (now.getTime() - alert.last_notified_at.getTime() < rule.repeatMinutes * 60_000) return null;
    const repeated = await tx.query(
      `UPDATE alerts SET last_notified_at = $2 WHERE id = $1 AND state = 'firing' AND acknowledged_at IS NULL AND last_notified_at = $3`,
      [alert.id, now.toISOString(), alert.last_notified_at.toISOString()],
    );
    if (repeated.rowCount === 0) return null;
    await recordTransition(tx, alert.id, 'repeat', now, condition.summary, rule.notify);
    return { alertId: alert.id, kind: 'repeat' as const };
  });
}

/** A pending alert whose condition clears ends silently; a firing one is resolved with a notice. */
async function resolve(db: Db, alert: OpenAlert, now: Date, notify: readonly string[]): Promise<boolean> {
  return db.transaction(async (tx) => {
    const updated = await tx.query<{ state: string; summary: string }>(
      `UPDATE alerts SET state = 'resolved', resolved_at = $2 WHERE id = $1 AND state = $3 RETURNING summary`,
      [alert.id, now.toISOString(), alert.state],
    );
    const row = updated.rows[0];
    if (!row || alert.state === 'pending') return false;
    await recordTransition(tx, alert.id, 'resolved', now, `resolved: ${row.summary}`, notify);
    return true;
  });
}

async function recordTransition(tx: Queryable, alertId: string, kind: TransitionKind, now: Date, summary: string, notify: readonly string[]): Promise<void> {
  const inserted = await tx.query<{ id: string }>(
    `INSERT INTO alert_transitions (alert_id, kind, at, summary) VALUES ($1, $2, $3, $4) RETURNING id`,
    [alertId, kind, now.toISOString(), summary],
  );
  const transitionId = inserted.rows[0]!.id;
  if (kind !== 'resolved') await tx.query(`UPDATE alerts SET last_notified_at = $2 WHERE id = $1`, [alertId, now.toISOString()]);
  if (notify.length > 0) {
    await tx.query(
      `INSERT INTO alert_notifications (transition_id, target) SELECT $1, unnest($2::text[]) ON CONFLICT (transition_id, target) DO NOTHING`,
      [transitionId, [...new Set(notify)]],
    );
    await tx.query(`SELECT pg_notify('switchboard_alert_notifications', '')`);
  }
}

export interface AlertView {
  id: string;
  ruleId: string;
  subject: string;
  state: string;
  severity: string;
  summary: string;
  value: number | null;
  patientId: string | null;
  coordinatorId: string | null;
  teamId: string | null;
  startedAt: Date;
  firingAt: Date | null;
  resolvedAt: Date | null;
  acknowledgedBy: string | null;
  acknowledgedAt: Date | null;
}

/** Alerts in the given states that `viewer` may see (alertVisibleSql), newest first. */
export async function listAlerts(db: Queryable, args: { states: string[]; limit: number; viewer: Viewer }): Promise<AlertView[]> {
  const found = await db.query<Record<string, any>>(
    `SELECT al.* FROM alerts al WHERE al.state = ANY($1::text[]) AND ${alertVisibleSql('$3::uuid', '$4::text')}
     ORDER BY COALESCE(al.firing_at, al.started_at) DESC LIMIT $2`,
    [args.states, args.limit, args.viewer.id, args.viewer.role],
  );
  return found.rows.map((r) => ({
    id: r.id,
    ruleId: r.rule_id,
    subject: r.subject,
    state: r.state,
    severity: r.severity,
    summary: r.summary,
    value: r.value,
    patientId: r.patient_id,
    coordinatorId: r.coordinator_id,
    teamId: r.team_id,
    startedAt: r.started_at,
    firingAt: r.firing_at,
    resolvedAt: r.resolved_at,
    acknowledgedBy: r.acknowledged_by,
    acknowledgedAt: r.acknowledged_at,
  }));
}

/**
 * Acknowledges an open alert (stops its repeats). Returns false when there is no such open, unacknowledged
 * alert that `viewer` may see: an alert outside their teams is as absent as a missing one.
 */
export async function acknowledgeAlert(db: Queryable, alertId: string, viewer: Viewer): Promise<boolean> {
  const updated = await db.query(
    `UPDATE alerts al SET acknowledged_by = $2, acknowledged_at = now()
     WHERE al.id = $1 AND al.state <> 'resolved' AND al.acknowledged_at IS NULL AND ${alertVisibleSql('$2::uuid', '$3::text')}`,
    [alertId, viewer.id, viewer.role],
  );
  return updated.rowCount > 0;
}
