import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Queryable } from '../db/db.ts';
import { channelInboundStats } from './alerts.ts';
import { openMsBetween, teamSchedule } from './clock.ts';

/** The webhook_silence rule's default lookback (src/ops/alert-rules.ts); deploy/prometheus/alerts.yml assumes it. */
const SILENCE_LOOKBACK_DAYS = 7;

/**
 * The process's metrics. Counters and histograms count what THIS process handled (each event is handled by
 * exactly one process, so summing over instances is exact and nothing is counted twice); gauges about shared
 * state are read from the database at scrape time, so every process reports the same truth.
 * One Registry per instance (not prom-client's global one), so tests and several apps in one process never mix.
 */
export interface OpsMetrics {
  readonly registry: Registry;
  inboundStored(channel: string): void;
  outboundCreated(channel: string, automatic: boolean): void;
  outboundFinal(status: string): void;
  providerError(provider: string, code: string): void;
  webhookSignatureFailure(provider: string): void;
  duplicateDropped(kind: 'inbound' | 'status'): void;
  webhookToStored(kind: 'inbound' | 'status', seconds: number): void;
  replyToProviderAccepted(seconds: number): void;
  providerAcceptedToDelivered(seconds: number): void;
  /** A human reply ended a wait: `firstResponse` when it opened a conversation (docs/ARCHITECTURE.md §15). */
  answered(waitSeconds: number, firstResponse: boolean): void;
  /** Refreshes the database-backed gauges, then renders the text exposition format. */
  render(db: Queryable, now?: Date): Promise<string>;
}

// Seconds: sub-second for pipeline latencies, minutes to a day for human response times.
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
const DELIVERY_BUCKETS = [0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600];
const RESPONSE_BUCKETS = [30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400];

export function createOpsMetrics(options: { droppedLogLines?: () => number } = {}): OpsMetrics {
  const registry = new Registry();
  const registers = [registry];
  // The logger is built before the metrics (it must report their failures too), so its count is read at scrape time.
  const droppedLogLines = options.droppedLogLines ?? (() => 0);
  let droppedLogLinesReported = 0;
  new Counter({
    name: 'switchboard_log_lines_dropped_total',
    help: 'Log lines this process could not write to stdout (a full buffer, or a reader that went away).',
    registers,
    collect() {
      const total = droppedLogLines();
      this.inc(total - droppedLogLinesReported);
      droppedLogLinesReported = total;
    },
  });
  const inbound = new Counter({ name: 'switchboard_messages_inbound_total', help: 'Inbound messages stored, by channel (duplicates excluded).', labelNames: ['channel'], registers });
  const outbound = new Counter({ name: 'switchboard_messages_outbound_total', help: 'Outbound messages written, by channel and whether a human wrote them.', labelNames: ['channel', 'automatic'], registers });
  const final = new Counter({ name: 'switchboard_outbound_final_total', help: 'Outbound messages reaching a final status (delivered, undelivered, failed).', labelNames: ['status'], registers });
  const providerErrors = new Counter({ name: 'switchboard_provider_errors_total', help: 'Failed provider calls, by provider and error code.', labelNames: ['provider', 'code'], registers });
  const signatureFailures = new Counter({ name: 'switchboard_webhook_signature_failures_total', help: 'Webhooks refused for a missing or invalid signature.', labelNames: ['provider'], registers });
  const duplicates = new Counter({ name: 'switchboard_duplicates_dropped_total', help: 'Provider redeliveries recognised and stored nothing new.', labelNames: ['kind'], registers });
  const webhookLatency = new Histogram({ name: 'switchboard_webhook_to_stored_seconds', help: 'From receiving a webhook to its commit.', labelNames: ['kind'], buckets: LATENCY_BUCKETS, registers });
  const replyLatency = new Histogram({ name: 'switchboard_reply_to_provider_accepted_seconds', help: 'From a reply being written to the provider accepting it.', buckets: LATENCY_BUCKETS, registers });
  const deliveryLatency = new Histogram({ name: 'switchboard_provider_accepted_to_delivered_seconds', help: 'From the provider accepting a message to its delivered status.', buckets: DELIVERY_BUCKETS, registers });
  const firstResponse = new Histogram({ name: 'switchboard_first_response_seconds', help: 'Wall-clock first response time of conversations answered by this process.', buckets: RESPONSE_BUCKETS, registers });
  const replyTime = new Histogram({ name: 'switchboard_reply_time_seconds', help: 'Wall-clock reply time of every answered wait (first responses included).', buckets: RESPONSE_BUCKETS, registers });

  const gauge = (name: string, help: string, labelNames: string[] = []) => new Gauge({ name, help, labelNames, registers });
  const maxWait = gauge('switchboard_patient_wait_max_seconds', 'Longest current patient wait (wall clock), from the database.');
  const teamMaxWait = gauge('switchboard_team_patient_wait_max_seconds', 'Longest current wait among the patients of a team.', ['team']);
  const coordinatorMaxWait = gauge('switchboard_coordinator_patient_wait_max_seconds', 'Longest current wait among the patients assigned to a coordinator.', ['coordinator']);
  const businessMaxWait = gauge('switchboard_patient_business_wait_max_seconds', "Longest current wait counted on each patient's team business clock (saturates at 24 h).");
  const waiting = gauge('switchboard_waiting_patients', 'Patients waiting for a human reply.');
  const outboxDepth = gauge('switchboard_outbox_depth', 'Outbound messages not yet accepted by a provider.');
  const outboxOldest = gauge('switchboard_outbox_oldest_undelivered_seconds', 'Age of the oldest outbound message not yet accepted by a provider.');
  const transcriptionDepth = gauge('switchboard_transcription_queue_depth', 'Recordings waiting to be downloaded and transcribed (pending or running media jobs).');
  const coordinatorLoad = gauge('switchboard_coordinator_assigned_patients', 'Patients assigned to a coordinator.', ['coordinator']);
  const coordinatorCapacity = gauge('switchboard_coordinator_capacity', 'How many patients a coordinator may hold.', ['coordinator']);
  const channelSilence = gauge('switchboard_channel_last_inbound_age_seconds', 'Time since the last inbound message on a channel.', ['channel']);
  const channelGapP95 = gauge('switchboard_channel_inbound_gap_p95_seconds', '95th percentile gap between inbound messages on a channel over the last 7 days (the webhook_silence rule\'s usual gap).', ['channel']);
  const channelLookbackCount = gauge('switchboard_channel_inbound_messages_7d', 'Inbound messages on a channel over the last 7 days.', ['channel']);
  const alertsFiring = gauge('switchboard_alerts_firing', 'Built-in alerts currently firing, by rule.', ['rule']);
  const notificationsFailed = gauge('switchboard_alert_notifications_failed', 'Alert notifications that exhausted their retries, by target.', ['target']);

  async function refresh(db: Queryable, now: Date): Promise<void> {
    const at = now.toISOString();
    const [overall, teams, coordinators, outbox, silence, firing, failed] = await Promise.all([
      db.query<{ max_wait: number | null; waiting: number }>(
        `SELECT EXTRACT(EPOCH FROM ($1::timestamptz - min(waiting_since)))::float8 AS max_wait, count(*)::int AS waiting
         FROM patients WHERE waiting_since IS NOT NULL`,
        [at],
      ),
      db.query<{ team: string; max_wait: number }>(
        `SELECT t.name AS team, EXTRACT(EPOCH FROM ($1::timestamptz - min(p.waiting_since)))::float8 AS max_wait
         FROM patients p JOIN assignments a ON a.patient_id = p.id
         JOIN teams t ON t.id = a.team_id OR t.id IN (SELECT team_id FROM team_members m WHERE m.coordinator_id = a.coordinator_id)
         WHERE p.waiting_since IS NOT NULL GROUP BY t.name`,
        [at],
      ),
      db.query<{ id: string; capacity: number; assigned: number; max_wait: number | null }>(
        `SELECT c.id, c.capacity, count(a.patient_id)::int AS assigned,
                EXTRACT(EPOCH FROM ($1::timestamptz - min(p.waiting_since)))::float8 AS max_wait
         FROM coordinators c LEFT JOIN assignments a ON a.coordinator_id = c.id LEFT JOIN patients p ON p.id = a.patient_id
         GROUP BY c.id, c.capacity`,
        [at],
      ),
      db.query<{ depth: number; oldest: number | null }>(
        `SELECT count(*)::int AS depth, EXTRACT(EPOCH FROM ($1::timestamptz - min(created_at)))::float8 AS oldest
         FROM outbox WHERE state IN ('pending', 'sending')`,
        [at],
      ),
      db.query<{ channel: string; age: number }>(
        `SELECT channel, EXTRACT(EPOCH FROM ($1::timestamptz - max(last_inbound_at)))::float8 AS age
         FROM channel_identities WHERE last_inbound_at IS NOT NULL GROUP BY channel`,
        [at],
      ),
      db.query<{ rule_id: string; n: number }>(`SELECT rule_id, count(*)::int AS n FROM alerts WHERE state = 'firing' GROUP BY rule_id`),
      db.query<{ target: string; n: number }>(`SELECT target, count(*)::int AS n FROM alert_notifications WHERE state = 'failed' GROUP BY target`),
    ]);
    maxWait.set(Math.max(0, overall.rows[0]?.max_wait ?? 0));
    waiting.set(overall.rows[0]?.waiting ?? 0);
    teamMaxWait.reset();
    for (const row of teams.rows) teamMaxWait.set({ team: row.team }, Math.max(0, row.max_wait));
    coordinatorMaxWait.reset();
    coordinatorLoad.reset();
    coordinatorCapacity.reset();
    for (const row of coordinators.rows) {
      coordinatorLoad.set({ coordinator: row.id }, row.assigned);
      coordinatorCapacity.set({ coordinator: row.id }, row.capacity);
      if (row.max_wait !== null) coordinatorMaxWait.set({ coordinator: row.id }, Math.max(0, row.max_wait));
    }
    outboxDepth.set(outbox.rows[0]?.depth ?? 0);
    outboxOldest.set(Math.max(0, outbox.rows[0]?.oldest ?? 0));
    channelSilence.reset();
    for (const row of silence.rows) channelSilence.set({ channel: row.channel }, Math.max(0, row.age));
    alertsFiring.reset();
    for (const row of firing.rows) alertsFiring.set({ rule: row.rule_id }, row.n);
    notificationsFailed.reset();
    for (const row of failed.rows) notificationsFailed.set({ target: row.target }, row.n);
    channelGapP95.reset();
    channelLookbackCount.reset();
    // The built-in webhook_silence rule's own figures (default 7-day lookback), so the Prometheus rule decides alike.
    for (const row of await channelInboundStats(db, now, SILENCE_LOOKBACK_DAYS)) {
      channelLookbackCount.set({ channel: row.channel }, row.n);
      if (row.p95 !== null) channelGapP95.set({ channel: row.channel }, row.p95);
    }
    transcriptionDepth.set(await transcriptionQueueDepth(db));
    businessMaxWait.set(await businessWaitMaxSeconds(db, now));
  }

  return {
    registry,
    inboundStored: (channel) => inbound.inc({ channel }),
    outboundCreated: (channel, automatic) => outbound.inc({ channel, automatic: String(automatic) }),
    outboundFinal: (status) => final.inc({ status }),
    providerError: (provider, code) => providerErrors.inc({ provider, code }),
    webhookSignatureFailure: (provider) => signatureFailures.inc({ provider }),
    duplicateDropped: (kind) => duplicates.inc({ kind }),
    webhookToStored: (kind, seconds) => webhookLatency.observe({ kind }, seconds),
    replyToProviderAccepted: (seconds) => replyLatency.observe(seconds),
    providerAcceptedToDelivered: (seconds) => deliveryLatency.observe(seconds),
    answered(waitSeconds, isFirst) {
      replyTime.observe(waitSeconds);
      if (isFirst) firstResponse.observe(waitSeconds);
    },
    async render(db, now = new Date()) {
      await refresh(db, now);
      return registry.metrics();
    },
  };
}

/** The patient_wait rule's business clock, as one number for Prometheus rules. */
async function businessWaitMaxSeconds(db: Queryable, now: Date): Promise<number> {
  const [waiting, teams] = await Promise.all([
    db.query<{ waiting_since: Date; team_id: string | null }>(
      `SELECT p.waiting_since,
              COALESCE(a.team_id, (SELECT m.team_id FROM team_members m WHERE m.coordinator_id = a.coordinator_id ORDER BY m.team_id LIMIT 1)) AS team_id
       FROM patients p LEFT JOIN assignments a ON a.patient_id = p.id WHERE p.waiting_since IS NOT NULL`,
    ),
    db.query<{ id: string; timezone: string; business_hours: unknown; holidays: unknown }>(`SELECT id, timezone, business_hours, holidays FROM teams`),
  ]);
  const schedules = new Map(teams.rows.map((t) => [t.id, teamSchedule(t)]));
  let max = 0;
  for (const row of waiting.rows) {
    const schedule = row.team_id ? (schedules.get(row.team_id) ?? null) : null;
    max = Math.max(max, openMsBetween(schedule, row.waiting_since.getTime(), now.getTime(), 86_400_000) / 1000);
  }
  return max;
}

/**
 * Recordings on their way to a transcript: a download or transcription job (src/calls/media-jobs.ts) still
 * pending or running. A recording has at most one of the two active at a time; distinct recordings are counted.
 */
async function transcriptionQueueDepth(db: Queryable): Promise<number> {
  const depth = await db.query<{ n: number }>(`SELECT count(DISTINCT recording_id)::int AS n FROM media_jobs WHERE state IN ('pending', 'running')`);
  return depth.rows[0]?.n ?? 0;
}
