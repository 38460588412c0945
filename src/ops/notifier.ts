/**
 * Delivers the notifications outbox: claim due rows with a lease (FOR UPDATE SKIP LOCKED, so several
 * processes never send one row twice), send each to its target independently, record the outcome fenced on
 * the attempt number. A failing target is retried with backoff and, after `maxAttempts`, marked failed
 * (listed as failing by the API and the alert_notifications_failed gauge); it never holds up other rows.
 */
import { createHmac } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Logger } from 'pino';
import type { Transporter } from 'nodemailer';
import type { ChannelAdapter } from '../channels/channel.ts';
import { DEFAULT_BACKOFF, nextRetryDelayMs, type BackoffPolicy } from '../core/retry.ts';
import type { Db, Queryable } from '../db/db.ts';
import { loadActiveAlertRules, type Target } from './alert-rules.ts';
import { checkTargetUrl, guardedLookup, maskUrl } from './alert-target-url.ts';

export interface NotifierDeps {
  db: Db;
  logger: Logger;
  /** The SMS adapter the message outbox uses; on-call SMS go out through it. */
  smsAdapter?: ChannelAdapter;
  mailer?: Transporter;
  emailFrom?: string;
  /** HMAC-SHA256 key for generic webhooks. */
  webhookSecret?: string;
  /** ALERT_TARGETS_ALLOW_PRIVATE: let slack/webhook targets reach loopback and private addresses (tests, labs). */
  allowPrivateTargets?: boolean;
  timeoutMs?: number;
  maxAttempts?: number;
  backoff?: BackoffPolicy;
  random?: () => number;
}

export interface NotificationPayload {
  notificationId: string;
  alertId: string;
  ruleId: string;
  subject: string;
  severity: string;
  /** firing, repeat or resolved. */
  transition: string;
  summary: string;
  at: string;
}

interface Claimed extends NotificationPayload {
  target: string;
  attempts: number;
}

export const SIGNATURE_HEADER = 'x-switchboard-signature';

/** Claims and delivers up to `limit` due notifications; returns how many were attempted. */
export async function deliverDueNotifications(deps: NotifierDeps, limit = 50): Promise<number> {
  const { db } = deps;
  const timeoutMs = deps.timeoutMs ?? 10_000;
  const claimed = await db.query<{ id: string; target: string; attempts: number; kind: string; at: Date; summary: string; alert_id: string; rule_id: string; subject: string; severity: string }>(
    `WITH due AS (
       SELECT id FROM alert_notifications
       WHERE (state = 'pending' AND next_attempt_at <= now()) OR (state = 'sending' AND lease_until < now())
       ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED
     ), claimed AS (
       UPDATE alert_notifications n SET state = 'sending', attempts = n.attempts + 1, lease_until = now() + make_interval(secs => $2)
       FROM due WHERE n.id = due.id RETURNING n.id, n.target, n.attempts, n.transition_id
     )
     SELECT c.id, c.target, c.attempts, t.kind, t.at, t.summary, a.id AS alert_id, a.rule_id, a.subject, a.severity
     FROM claimed c JOIN alert_transitions t ON t.id = c.transition_id JOIN alerts a ON a.id = t.alert_id`,
    [limit, (timeoutMs * 2 + 30_000) / 1000],
  );
  if (claimed.rows.length === 0) return 0;
  const { document } = await loadActiveAlertRules(db);
  const rows: Claimed[] = claimed.rows.map((r) => ({
    notificationId: r.id,
    target: r.target,
    attempts: r.attempts,
    alertId: r.alert_id,
    ruleId: r.rule_id,
    subject: r.subject,
    severity: r.severity,
    transition: r.kind,
    summary: r.summary,
    at: r.at.toISOString(),
  }));
  await Promise.all(
    rows.map(async (row) => {
      const target = document.targets[row.target];
      let error: string | null = null;
      try {
        if (!target) throw new Error(`no target named ${row.target} in the active alert rules`);
        await send(deps, target, row, AbortSignal.timeout(timeoutMs));
      } catch (caught) {
        error = caught instanceof Error ? caught.message : String(caught);
        deps.logger.warn({ notificationId: row.notificationId, target: row.target, attempts: row.attempts, err: error }, 'alert notification failed');
      }
      await record(db, row, error, deps).catch((caught: unknown) => deps.logger.error({ err: caught }, 'recording a notification outcome failed'));
    }),
  );
  return rows.length;
}

async function record(db: Queryable, row: Claimed, error: string | null, deps: NotifierDeps): Promise<void> {
  if (error === null) {
    await db.query(`UPDATE alert_notifications SET state = 'sent', sent_at = now(), lease_until = NULL, last_error = NULL WHERE id = $1 AND attempts = $2 AND state = 'sending'`, [row.notificationId, row.attempts]);
    return;
  }
  if (row.attempts >= (deps.maxAttempts ?? 8)) {
    await db.query(`UPDATE alert_notifications SET state = 'failed', lease_until = NULL, last_error = $3 WHERE id = $1 AND attempts = $2 AND state = 'sending'`, [row.notificationId, row.attempts, error]);
    return;
  }
  const delayMs = nextRetryDelayMs(row.attempts, deps.backoff ?? DEFAULT_BACKOFF, deps.random ?? Math.random);
  await db.query(
    `UPDATE alert_notifications SET state = 'pending', next_attempt_at = now() + make_interval(secs => $3), lease_until = NULL, last_error = $4
     WHERE id = $1 AND attempts = $2 AND state = 'sending'`,
    [row.notificationId, row.attempts, delayMs / 1000, error],
  );
}

function text(row: NotificationPayload): string {
  const label = row.transition === 'resolved' ? 'RESOLVED' : row.transition === 'repeat' ? 'STILL FIRING' : 'FIRING';
  return `[Switchboard ${label}] ${row.ruleId} (${row.severity}): ${row.summary}`;
}

/** Our notification text carries ids and durations, never message bodies or names of patients. */
async function send(deps: NotifierDeps, target: Target, row: Claimed, signal: AbortSignal): Promise<void> {
  const payload: NotificationPayload = {
    notificationId: row.notificationId,
    alertId: row.alertId,
    ruleId: row.ruleId,
    subject: row.subject,
    severity: row.severity,
    transition: row.transition,
    summary: row.summary,
    at: row.at,
  };
  switch (target.type) {
    case 'slack':
      return postJson(deps, target.url, { text: text(payload) }, {}, signal);
    case 'webhook': {
      if (!deps.webhookSecret) throw new Error('ALERT_WEBHOOK_SECRET is not set, so webhook targets cannot be signed');
      const body = JSON.stringify(payload);
      const signature = 'sha256=' + createHmac('sha256', deps.webhookSecret).update(body).digest('hex');
      // The delivery id lets a receiver drop the rare resend after a crash between send and record.
      return postJson(deps, target.url, body, { [SIGNATURE_HEADER]: signature, 'x-switchboard-delivery': row.notificationId }, signal);
    }
    case 'email': {
      if (!deps.mailer) throw new Error('SMTP_HOST is not set, so email targets cannot be sent');
      await deps.mailer.sendMail({
        from: deps.emailFrom ?? 'switchboard@localhost',
        to: target.to,
        subject: text(payload).slice(0, 180),
        text: `${text(payload)}\n\nalert ${payload.alertId}, ${payload.transition} at ${payload.at}\n`,
        headers: { 'X-Switchboard-Delivery': row.notificationId },
      });
      return;
    }
    case 'sms': {
      if (!deps.smsAdapter) throw new Error('no SMS channel is configured');
      await deps.smsAdapter.send({ channel: 'sms', to: target.to, body: text(payload).slice(0, 320), media: [] }, { outboxId: row.notificationId, signal });
      return;
    }
  }
}

/**
 * POSTs with node:http(s), not fetch: `lookup` lets us refuse non-public addresses on the connection itself, and
 * redirects are never followed (a 3xx is a failed delivery: a redirect could point anywhere).
 */
function postJson(deps: NotifierDeps, url: string, body: unknown, headers: Record<string, string>, signal: AbortSignal): Promise<void> {
  const allowPrivate = deps.allowPrivateTargets === true;
  const problem = checkTargetUrl(url, allowPrivate);
  if (problem) return Promise.reject(new Error(`${maskUrl(url)}: ${problem}`));
  const payload = typeof body === 'string' ? body : JSON.stringify(body);
  const target = new URL(url);
  const request = target.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const outgoing = request(
      target,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), ...headers },
        signal,
        ...(allowPrivate ? {} : { lookup: guardedLookup }),
      },
      (response) => {
        response.resume();
        const status = response.statusCode ?? 0;
        if (status >= 200 && status < 300) resolve();
        else reject(new Error(`${maskUrl(url)} answered ${status}${status >= 300 && status < 400 ? ' (redirects are not followed)' : ''}`));
      },
    );
    outgoing.on('error', (error) => reject(new Error(`${maskUrl(url)}: ${error.message}`)));
    outgoing.end(payload);
  });
}

export interface TargetHealth {
  target: string;
  failing: boolean;
  pending: number;
  failed: number;
  lastError: string | null;
  lastSentAt: Date | null;
}

/** Per target: is its newest finished notification a failure, and what is still queued. */
export async function listTargetHealth(db: Queryable): Promise<TargetHealth[]> {
  const found = await db.query<{ target: string; pending: number; failed: number; last_error: string | null; last_sent_at: Date | null; newest_state: string | null }>(
    `SELECT target,
            count(*) FILTER (WHERE state IN ('pending', 'sending'))::int AS pending,
            count(*) FILTER (WHERE state = 'failed')::int AS failed,
            (array_agg(last_error ORDER BY created_at DESC) FILTER (WHERE last_error IS NOT NULL))[1] AS last_error,
            max(sent_at) AS last_sent_at,
            (array_agg(state ORDER BY created_at DESC) FILTER (WHERE state IN ('sent', 'failed') OR attempts > 1))[1] AS newest_state
     FROM alert_notifications GROUP BY target ORDER BY target`,
  );
  return found.rows.map((r) => ({
    target: r.target,
    failing: r.newest_state === 'failed' || r.newest_state === 'pending' || r.newest_state === 'sending',
    pending: r.pending,
    failed: r.failed,
    lastError: r.last_error,
    lastSentAt: r.last_sent_at,
  }));
}
