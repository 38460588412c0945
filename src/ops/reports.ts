/**
 * Reports per coordinator, team or channel over an inclusive range of local dates in an explicit IANA
 * zone. Definitions (docs/ARCHITECTURE.md §15): a wait runs from an inbound message that finds the patient
 * not waiting to the next human reply; a conversation opens with a wait that starts when no human has
 * written to the patient for CONVERSATION_IDLE_MS; its first wait's length is the first response time.
 */
import { stringify } from 'csv-stringify/sync';
import type { Queryable } from '../db/db.ts';
import { supervisedTeamsSql, visibleSql, type Viewer } from '../db/visibility.ts';
import { CONVERSATION_IDLE_MS } from '../db/messages.ts';
import { isValidTimeZone } from '../core/routing/business-hours.ts';
import type { CompiledSchedule } from '../core/routing/business-hours.ts';
import { nextDate, openMsBetween, startOfLocalDay, teamSchedule, type ClockKind } from './clock.ts';

export type GroupBy = 'coordinator' | 'team' | 'channel';

export interface ReportQuery {
  groupBy: GroupBy;
  /** Local dates YYYY-MM-DD, both inclusive. */
  from: string;
  to: string;
  timeZone: string;
  clock: ClockKind;
  slaMinutes: number;
  now: Date;
  /** Whose report: an admin (or no viewer, for internal use) gets everything; a supervisor gets their teams (see scopeNote). */
  viewer?: Viewer;
}

export interface Stats {
  p50: number | null;
  p90: number | null;
  max: number | null;
  count: number;
}

export interface ReportRow {
  key: string;
  label: string;
  messagesIn: number;
  messagesOut: number;
  automaticOut: number;
  patientsServed: number;
  /** Waits that started in the range. */
  waits: number;
  unanswered: number;
  conversations: number;
  /** Seconds, on the report's clock. */
  firstResponse: Stats;
  replyTime: Stats;
  slaMetPercent: number | null;
  handoffs: number | null;
}

export interface Report {
  groupBy: GroupBy;
  timeZone: string;
  from: string;
  to: string;
  /** The half-open instant range [startsAt, endsAt) the local dates cover. */
  startsAt: string;
  endsAt: string;
  clock: ClockKind;
  clockNote: string;
  slaMinutes: number;
  /** 'all', or the ids of the teams the report was limited to. */
  scope: 'all' | { teamIds: string[] };
  scopeNote: string;
  rows: ReportRow[];
  total: ReportRow;
}

export interface MessageFact {
  id: string;
  patientId: string;
  seq: number;
  direction: 'inbound' | 'outbound';
  channel: string;
  at: number;
  authorId: string | null;
  automatic: boolean;
}

export interface Wait {
  patientId: string;
  startMs: number;
  channel: string;
  inboundIds: string[];
  firstResponse: boolean;
  reply: { at: number; authorId: string | null } | null;
}

/** Splits one patient's messages (in log order) into waits, exactly as the waiting_since column moves. */
export function waitsOf(messages: readonly MessageFact[]): Wait[] {
  const waits: Wait[] = [];
  let open: Wait | null = null;
  let lastHuman: number | null = null;
  for (const m of messages) {
    if (m.direction === 'inbound') {
      if (open) open.inboundIds.push(m.id);
      else {
        open = { patientId: m.patientId, startMs: m.at, channel: m.channel, inboundIds: [m.id], firstResponse: lastHuman === null || m.at - lastHuman >= CONVERSATION_IDLE_MS, reply: null };
        waits.push(open);
      }
    } else if (!m.automatic) {
      if (open) open.reply = { at: m.at, authorId: m.authorId };
      open = null;
      lastHuman = m.at;
    }
  }
  return waits;
}

/** Nearest-rank percentile: the smallest value with at least p % of values at or below it. */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function stats(values: number[]): Stats {
  const sorted = [...values].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p90: percentile(sorted, 90), max: sorted.length ? sorted[sorted.length - 1]! : null, count: sorted.length };
}

export function reportRange(from: string, to: string, timeZone: string): { startMs: number; endMs: number } {
  return { startMs: startOfLocalDay(from, timeZone), endMs: startOfLocalDay(nextDate(to), timeZone) };
}

export function validateReportQuery(q: { from: string; to: string; timeZone: string }): string[] {
  const problems: string[] = [];
  if (!isValidTimeZone(q.timeZone)) problems.push('tz: unknown IANA time zone');
  if (q.to < q.from) problems.push('to: must not be before from');
  if (Date.parse(q.to) - Date.parse(q.from) > 366 * 86_400_000) problems.push('to: a report covers at most 366 days');
  return problems;
}

export async function buildReport(db: Queryable, q: ReportQuery): Promise<Report> {
  const { startMs, endMs } = reportRange(q.from, q.to, q.timeZone);
  const start = new Date(startMs).toISOString();
  const end = new Date(endMs).toISOString();
  // A supervisor's report covers the patients they may see now (visibleSql, by current assignment) and only
  // the rows of their teams and those teams' members; an admin's covers everyone.
  const scoped = q.viewer !== undefined && q.viewer.role !== 'admin';
  const params = (base: unknown[]) => (scoped ? [...base, q.viewer!.id, q.viewer!.role] : base);
  const patientScope = (column: string, first: number) =>
    scoped
      ? `AND ${column} IN (SELECT vp.id FROM patients vp LEFT JOIN assignments va ON va.patient_id = vp.id WHERE ${visibleSql(`$${first}::uuid`, `$${first + 1}::text`, 'va')})`
      : '';
  const [messages, coordinators, teams, members, assignments, handoffs, scopeTeams] = await Promise.all([
    // Every message of every patient active in the range: a wait may have begun before it.
    db.query<{ id: string; patient_id: string; seq: number; direction: 'inbound' | 'outbound'; channel: string; created_at: Date; author_id: string | null; automatic: boolean }>(
      `SELECT id, patient_id, seq, direction, channel, created_at, author_id, automatic FROM messages
       WHERE patient_id IN (SELECT DISTINCT patient_id FROM messages WHERE created_at >= $1 AND created_at < $2)
         AND created_at <= $3 ${patientScope('patient_id', 4)}
       ORDER BY patient_id, seq`,
      params([start, end, q.now.toISOString()]),
    ),
    db.query<{ id: string; name: string }>(`SELECT id, name FROM coordinators`),
    db.query<{ id: string; name: string; timezone: string; business_hours: unknown; holidays: unknown }>(`SELECT id, name, timezone, business_hours, holidays FROM teams`),
    db.query<{ team_id: string; coordinator_id: string }>(`SELECT team_id, coordinator_id FROM team_members ORDER BY team_id`),
    db.query<{ patient_id: string; coordinator_id: string | null; team_id: string | null }>(`SELECT patient_id, coordinator_id, team_id FROM assignments`),
    db.query<{ from_coordinator_id: string | null; to_coordinator_id: string | null }>(
      `SELECT from_coordinator_id, to_coordinator_id FROM patient_events WHERE kind = 'handoff' AND created_at >= $1 AND created_at < $2 ${patientScope('patient_id', 3)}`,
      params([start, end]),
    ),
    scoped ? db.query<{ team_id: string }>(`SELECT team_id FROM ${supervisedTeamsSql('$1::uuid', '$2::text')} AS t(team_id) ORDER BY team_id`, [q.viewer!.id, q.viewer!.role]) : null,
  ]);
  const teamIdsInScope = scopeTeams ? scopeTeams.rows.map((r) => r.team_id) : null;

  const coordinatorName = new Map(coordinators.rows.map((c) => [c.id, c.name]));
  const teamInfo = new Map(teams.rows.map((t) => [t.id, { name: t.name, schedule: teamSchedule(t) }]));
  const teamsOf = new Map<string, string[]>();
  for (const m of members.rows) teamsOf.set(m.coordinator_id, [...(teamsOf.get(m.coordinator_id) ?? []), m.team_id]);
  const assignment = new Map(assignments.rows.map((a) => [a.patient_id, a]));

  const byPatient = new Map<string, MessageFact[]>();
  for (const r of messages.rows) {
    const fact: MessageFact = { id: r.id, patientId: r.patient_id, seq: r.seq, direction: r.direction, channel: r.channel, at: r.created_at.getTime(), authorId: r.author_id, automatic: r.automatic };
    const list = byPatient.get(fact.patientId);
    if (list) list.push(fact);
    else byPatient.set(fact.patientId, [fact]);
  }

  type Acc = { row: ReportRow; served: Set<string>; first: number[]; reply: number[]; met: number; missed: number };
  const groups = new Map<string, Acc>();
  const newAcc = (key: string, label: string): Acc => ({
    row: { key, label, messagesIn: 0, messagesOut: 0, automaticOut: 0, patientsServed: 0, waits: 0, unanswered: 0, conversations: 0, firstResponse: stats([]), replyTime: stats([]), slaMetPercent: null, handoffs: q.groupBy === 'channel' ? null : 0 },
    served: new Set(),
    first: [],
    reply: [],
    met: 0,
    missed: 0,
  });
  const total = newAcc('*', 'all');
  const acc = (key: string): Acc => {
    let found = groups.get(key);
    if (!found) {
      const label = q.groupBy === 'coordinator' ? (coordinatorName.get(key) ?? key) : q.groupBy === 'team' ? (teamInfo.get(key)?.name ?? key) : key;
      found = newAcc(key, label);
      groups.set(key, found);
    }
    return found;
  };
  const teamKeys = (coordinatorId: string | null, patientId: string): string[] => {
    if (coordinatorId) return teamsOf.get(coordinatorId) ?? [];
    const queued = assignment.get(patientId)?.team_id;
    return queued ? [queued] : [];
  };
  /** Group keys a wait (or an inbound message of it) belongs to, and the schedule its business clock uses. */
  const keysFor = (coordinatorId: string | null, patientId: string, channel: string): string[] =>
    q.groupBy === 'channel' ? [channel] : q.groupBy === 'coordinator' ? (coordinatorId ? [coordinatorId] : []) : teamKeys(coordinatorId, patientId);
  const scheduleFor = (coordinatorId: string | null, patientId: string): CompiledSchedule | null => {
    const team = teamKeys(coordinatorId, patientId)[0];
    return team ? (teamInfo.get(team)?.schedule ?? null) : null;
  };
  const inRange = (at: number) => at >= startMs && at < endMs;
  const nowMs = q.now.getTime();
  const slaMs = q.slaMinutes * 60_000;

  for (const [patientId, facts] of byPatient) {
    const waits = waitsOf(facts);
    const waitOfInbound = new Map<string, Wait>();
    for (const w of waits) for (const id of w.inboundIds) waitOfInbound.set(id, w);
    for (const w of waits) {
      // Unanswered: attributed to whoever holds the patient now.
      const owner = w.reply ? w.reply.authorId : (assignment.get(patientId)?.coordinator_id ?? null);
      (w as Wait & { owner: string | null }).owner = owner;
      if (!inRange(w.startMs)) continue;
      const schedule = q.clock === 'business' ? scheduleFor(owner, patientId) : null;
      const length = (until: number) => (q.clock === 'business' ? openMsBetween(schedule, w.startMs, until) : until - w.startMs);
      for (const target of [total, ...keysFor(owner, patientId, w.channel).map(acc)]) {
        target.row.waits += 1;
        if (w.firstResponse) target.row.conversations += 1;
        if (w.reply) {
          const ms = length(w.reply.at);
          target.reply.push(ms / 1000);
          if (w.firstResponse) target.first.push(ms / 1000);
          if (ms <= slaMs) target.met += 1;
          else target.missed += 1;
        } else {
          target.row.unanswered += 1;
          if (length(nowMs) > slaMs) target.missed += 1;
        }
      }
    }
    for (const m of facts) {
      if (!inRange(m.at)) continue;
      if (m.direction === 'inbound') {
        const owner = (waitOfInbound.get(m.id) as (Wait & { owner?: string | null }) | undefined)?.owner ?? null;
        for (const target of [total, ...keysFor(owner, patientId, m.channel).map(acc)]) target.row.messagesIn += 1;
      } else if (m.automatic) {
        const keys = q.groupBy === 'channel' ? [m.channel] : [];
        for (const target of [total, ...keys.map(acc)]) target.row.automaticOut += 1;
      } else {
        for (const target of [total, ...keysFor(m.authorId, patientId, m.channel).map(acc)]) {
          target.row.messagesOut += 1;
          target.served.add(patientId);
        }
      }
    }
  }
  if (q.groupBy !== 'channel') {
    for (const h of handoffs.rows) {
      const keys = new Set<string>();
      for (const c of [h.from_coordinator_id, h.to_coordinator_id]) {
        if (!c) continue;
        for (const k of q.groupBy === 'coordinator' ? [c] : (teamsOf.get(c) ?? [])) keys.add(k);
      }
      for (const k of keys) acc(k).row.handoffs! += 1;
      total.row.handoffs! += 1;
    }
  }

  const coordinatorsInScope = teamIdsInScope ? new Set([q.viewer!.id, ...members.rows.filter((m) => teamIdsInScope.includes(m.team_id)).map((m) => m.coordinator_id)]) : null;
  const inScope = (a: Acc): boolean =>
    !teamIdsInScope || q.groupBy === 'channel' || (q.groupBy === 'team' ? teamIdsInScope.includes(a.row.key) : coordinatorsInScope!.has(a.row.key));
  const finish = (a: Acc): ReportRow => ({
    ...a.row,
    patientsServed: a.served.size,
    firstResponse: stats(a.first),
    replyTime: stats(a.reply),
    slaMetPercent: a.met + a.missed === 0 ? null : (100 * a.met) / (a.met + a.missed),
  });
  return {
    groupBy: q.groupBy,
    timeZone: q.timeZone,
    from: q.from,
    to: q.to,
    startsAt: start,
    endsAt: end,
    clock: q.clock,
    clockNote:
      q.clock === 'business'
        ? "business clock: each wait counts only the open hours of its owner's first team (a patient with no team: always open)"
        : 'wall clock: every second counts',
    slaMinutes: q.slaMinutes,
    scope: teamIdsInScope ? { teamIds: teamIdsInScope } : 'all',
    scopeNote: teamIdsInScope
      ? `limited to your ${teamIdsInScope.length} supervised team(s): their patients as assigned now, and rows for those teams and their members`
      : 'every team, coordinator and channel',
    rows: [...groups.values()].filter(inScope).map(finish).sort((a, b) => a.label.localeCompare(b.label)),
    total: finish(total),
  };
}

export interface DailySeries {
  timeZone: string;
  clock: ClockKind;
  clockNote: string;
  scopeNote: string;
  slaMinutes: number;
  /** One entry per local date, oldest first; each is that day's totals (waits counted on the day they start). */
  days: Array<{ date: string; startsAt: string; endsAt: string; total: ReportRow }>;
}

/** Day-by-day totals for charts. Each local day is its own report range, so DST days are 23 or 25 hours. */
export async function buildDailySeries(db: Queryable, q: Omit<ReportQuery, 'groupBy'>): Promise<DailySeries> {
  const days: DailySeries['days'] = [];
  let clockNote = '';
  let scopeNote = '';
  for (let date = q.from; date <= q.to; date = nextDate(date)) {
    const report = await buildReport(db, { ...q, groupBy: 'channel', from: date, to: date });
    clockNote = report.clockNote;
    scopeNote = report.scopeNote;
    days.push({ date, startsAt: report.startsAt, endsAt: report.endsAt, total: report.total });
  }
  return { timeZone: q.timeZone, clock: q.clock, clockNote, scopeNote, slaMinutes: q.slaMinutes, days };
}

export function reportToCsv(report: Report): string {
  const statCols = (s: Stats) => [s.p50, s.p90, s.max].map((v) => (v === null ? '' : v.toFixed(1)));
  const line = (r: ReportRow) => [
    report.groupBy,
    r.key,
    r.label,
    r.messagesIn,
    r.messagesOut,
    r.automaticOut,
    r.patientsServed,
    r.waits,
    r.unanswered,
    r.conversations,
    ...statCols(r.firstResponse),
    ...statCols(r.replyTime),
    r.slaMetPercent === null ? '' : r.slaMetPercent.toFixed(1),
    r.handoffs ?? '',
    report.clock,
    report.timeZone,
    report.from,
    report.to,
    report.scope === 'all' ? 'all' : `teams:${report.scope.teamIds.join(' ')}`,
  ];
  return stringify([
    [
      'group_by', 'key', 'label', 'messages_in', 'messages_out', 'automatic_out', 'patients_served', 'waits', 'unanswered', 'conversations',
      'first_response_p50_s', 'first_response_p90_s', 'first_response_max_s', 'reply_time_p50_s', 'reply_time_p90_s', 'reply_time_max_s',
      'sla_met_percent', 'handoffs', 'clock', 'time_zone', 'from', 'to', 'scope',
    ],
    ...report.rows.map(line),
    line(report.total),
  ]);
}
