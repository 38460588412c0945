import Fastify from 'fastify';
import type { Logger } from 'pino';
import type { ChannelAdapter } from '../channels/channel.ts';
import { createSmtpTransport, type EmailConfig } from '../channels/email.ts';
import type { OpsConfig } from '../config.ts';
import type { Channel } from '../core/types.ts';
import type { Db } from '../db/db.ts';
import type { OpsMetrics } from './metrics.ts';
import { startAlertScheduler, type AlertScheduler } from './scheduler.ts';

export interface OpsService {
  metricsUrl?: string;
  scheduler?: AlertScheduler;
  stop(): Promise<void>;
}

/** Starts what the ops config asks for: the loopback /metrics listener, and (worker role) the alert scheduler. */
export async function startOps(args: {
  db: Db;
  logger: Logger;
  adapters: ReadonlyMap<Channel, ChannelAdapter>;
  metrics: OpsMetrics;
  config: OpsConfig;
  evaluateAlerts: boolean;
  /** The email channel's SMTP settings (SMTP_*, or the demo's fake): alert email goes through the same server. */
  email?: EmailConfig;
}): Promise<OpsService> {
  const { db, logger, metrics, config } = args;
  const stops: Array<() => Promise<void>> = [];
  let metricsUrl: string | undefined;
  if (config.metricsPort !== undefined) {
    // A separate listener, so /metrics can be reachable only from the host (or a scrape network) without a token.
    const server = Fastify({ logger: false });
    server.get('/metrics', async (_request, reply) => reply.type(metrics.registry.contentType).send(await metrics.render(db)));
    metricsUrl = (await server.listen({ host: config.metricsHost, port: config.metricsPort })) + '/metrics';
    stops.push(() => server.close());
  }
  let scheduler: AlertScheduler | undefined;
  if (args.evaluateAlerts) {
    const mailer = args.email ? createSmtpTransport(args.email) : undefined;
    scheduler = await startAlertScheduler({
      db,
      logger,
      intervalMs: config.alertsIntervalMs,
      smsAdapter: args.adapters.get('sms'),
      mailer,
      emailFrom: config.alertEmailFrom ?? args.email?.from,
      webhookSecret: config.alertWebhookSecret,
      allowPrivateTargets: config.alertTargetsAllowPrivate,
    });
    stops.push(() => scheduler!.stop());
    if (mailer) stops.push(async () => mailer.close());
  }
  return {
    metricsUrl,
    scheduler,
    async stop() {
      for (const stop of stops.reverse()) await stop();
    },
  };
}
