import { timingSafeEqual, createHash } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { appendAudit } from '../db/audit.ts';
import { BadRequestError, NotFoundError, UnauthorizedError } from '../errors.ts';
import { listAlertRuleVersions, loadActiveAlertRules, maskAlertRulesDocument, saveAlertRules, validateAlertRules } from '../ops/alert-rules.ts';
import { maskUrlsIn } from '../ops/alert-target-url.ts';
import { acknowledgeAlert, listAlerts } from '../ops/alerts.ts';
import { listTargetHealth } from '../ops/notifier.ts';
import { buildDailySeries, buildReport, reportToCsv, validateReportQuery } from '../ops/reports.ts';
import { parseInput, type AppDeps } from './server.ts';
import { ADMIN, SUPERVISOR, callerOf, policy } from './policy.ts';

const IsoDate = z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'expected YYYY-MM-DD').refine((d) => !Number.isNaN(Date.parse(d)), 'not a calendar date');
const ReportQuery = z.object({
  groupBy: z.enum(['coordinator', 'team', 'channel']).default('coordinator'),
  from: IsoDate,
  to: IsoDate,
  tz: z.string().min(1, 'tz (an IANA zone such as America/New_York) is required'),
  clock: z.enum(['wall', 'business']).default('wall'),
  slaMinutes: z.coerce.number().positive().max(10080).default(15),
  format: z.enum(['json', 'csv']).default('json'),
});
const AlertsQuery = z.object({
  state: z
    .string()
    .default('firing')
    .transform((s) => s.split(','))
    .pipe(z.array(z.enum(['pending', 'firing', 'resolved']))),
  limit: z.coerce.number().int().min(1).max(500).default(100),
});
const AlertParams = z.object({ id: z.uuid() });

/** Checks a bearer token against the configured one without leaking its length or content through timing. */
export function isMetricsTokenValid(header: string | undefined, token: string): boolean {
  const given = header?.startsWith('Bearer ') ? header.slice(7).trim() : '';
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return given !== '' && timingSafeEqual(digest(given), digest(token));
}

export async function registerOpsRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const { db } = deps;

  // On the main port /metrics exists only with a token; METRICS_PORT serves it unauthenticated on loopback.
  if (deps.metrics && deps.metricsToken) {
    const metrics = deps.metrics;
    const token = deps.metricsToken;
    app.get('/metrics', policy({ auth: 'metrics-token' }), async (request, reply) => {
      if (!isMetricsTokenValid(request.headers.authorization, token)) throw new UnauthorizedError('GET /metrics needs Authorization: Bearer $METRICS_TOKEN');
      return reply.type(metrics.registry.contentType).send(await metrics.render(db));
    });
  }

  const targetOptions = { allowPrivateTargets: deps.alertTargetsAllowPrivate === true };

  app.get('/api/ops/alert-rules', policy(SUPERVISOR), async (request) => {
    const caller = callerOf(request);
    const active = await loadActiveAlertRules(db);
    // A Slack or webhook URL's path is its secret: only admins (who may change them) see them whole.
    const shown = caller.role === 'admin' ? active : { ...active, document: maskAlertRulesDocument(active.document) };
    return { active: shown, versions: await listAlertRuleVersions(db) };
  });

  /** Dry run: every problem listed, nothing stored. */
  app.post('/api/ops/alert-rules/validate', policy(SUPERVISOR), async (request) => {
    const caller = callerOf(request);
    const result = validateAlertRules(request.body, targetOptions);
    if (!result.ok) return { ok: false, errors: result.errors };
    return { ok: true, document: caller.role === 'admin' ? result.document : maskAlertRulesDocument(result.document) };
  });

  app.put('/api/ops/alert-rules', policy(ADMIN), async (request, reply) => {
    const caller = callerOf(request);
    const result = await saveAlertRules(db, request.body, caller.id, targetOptions);
    if (!result.ok) throw new BadRequestError('invalid_alert_rules', 'the alert rules are invalid; the active version is unchanged', { details: result.errors });
    await appendAudit(db, { actorId: caller.id, action: 'alert_rules.save', detail: { version: result.version }, ip: request.ip });
    return reply.status(201).send({ version: result.version, document: result.document });
  });

  /** What the inbox shows supervisors as banners. */
  app.get('/api/ops/alerts', policy(SUPERVISOR), async (request) => {
    const caller = callerOf(request);
    const query = parseInput(AlertsQuery, request.query);
    const alerts = await listAlerts(db, { states: query.state, limit: query.limit, viewer: caller });
    await appendAudit(db, { actorId: caller.id, action: 'alerts.read', detail: { states: query.state, alerts: alerts.length }, ip: request.ip });
    return { alerts };
  });

  app.post('/api/ops/alerts/:id/ack', policy({ ...SUPERVISOR, scope: { handler: 'the alert, visible as in alertVisibleSql' } }), async (request) => {
    const caller = callerOf(request);
    const { id } = parseInput(AlertParams, request.params);
    if (!(await acknowledgeAlert(db, id, caller))) throw new NotFoundError('open unacknowledged alert');
    await appendAudit(db, { actorId: caller.id, action: 'alert.ack', detail: { alertId: id }, ip: request.ip });
    return { id, acknowledgedBy: caller.id };
  });

  app.get('/api/ops/alert-targets', policy(SUPERVISOR), async (request) => {
    const caller = callerOf(request);
    const targets = await listTargetHealth(db);
    if (caller.role === 'admin') return { targets };
    return { targets: targets.map((t) => ({ ...t, lastError: t.lastError && maskUrlsIn(t.lastError) })) };
  });

  app.get('/api/ops/reports', policy(SUPERVISOR), async (request, reply) => {
    const caller = callerOf(request);
    const query = parseInput(ReportQuery, request.query);
    const problems = validateReportQuery({ from: query.from, to: query.to, timeZone: query.tz });
    if (problems.length > 0) {
      throw new BadRequestError('invalid_input', 'the request is invalid', { details: problems.map((p) => ({ path: p.split(':')[0], message: p.slice(p.indexOf(':') + 2) })) });
    }
    const report = await buildReport(db, { groupBy: query.groupBy, from: query.from, to: query.to, timeZone: query.tz, clock: query.clock, slaMinutes: query.slaMinutes, now: new Date(), viewer: caller });
    await appendAudit(db, { actorId: caller.id, action: 'report.read', detail: { groupBy: query.groupBy, from: query.from, to: query.to, format: query.format }, ip: request.ip });
    if (query.format === 'csv') {
      const name = `switchboard-${query.groupBy}-${query.from}-${query.to}.csv`;
      return reply.type('text/csv; charset=utf-8').header('content-disposition', `attachment; filename="${name}"`).send(reportToCsv(report));
    }
    return report;
  });

  /** Day-by-day totals over at most 92 days, for the dashboard's charts. */
  app.get('/api/ops/reports/daily', policy(SUPERVISOR), async (request) => {
    const caller = callerOf(request);
    const query = parseInput(ReportQuery, request.query);
    const problems = validateReportQuery({ from: query.from, to: query.to, timeZone: query.tz });
    if (Date.parse(query.to) - Date.parse(query.from) > 91 * 86_400_000) problems.push('to: a daily series covers at most 92 days');
    if (problems.length > 0) {
      throw new BadRequestError('invalid_input', 'the request is invalid', { details: problems.map((p) => ({ path: p.split(':')[0], message: p.slice(p.indexOf(':') + 2) })) });
    }
    const series = await buildDailySeries(db, { from: query.from, to: query.to, timeZone: query.tz, clock: query.clock, slaMinutes: query.slaMinutes, now: new Date(), viewer: caller });
    await appendAudit(db, { actorId: caller.id, action: 'report.read', detail: { series: 'daily', from: query.from, to: query.to }, ip: request.ip });
    return series;
  });
}
