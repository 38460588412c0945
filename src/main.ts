import pino from 'pino';
import { buildAdapters } from './channels/index.ts';
import { ConfigError, parseConfig, type TwilioConfig } from './config.ts';
import { openDatabase } from './db/open.ts';
import { DEMO_LOGINS, seedDemo, startDemoMeta, startDemoProviders } from './demo.ts';
import type { ReplyRules } from './core/reply-channel.ts';
import { startWeb } from './services/web.ts';
import { startWorker } from './services/worker.ts';

/** The composition root: config → dependencies → roles; every start has a stop, run in reverse. */
async function main(): Promise<void> {
  const config = parseConfig(process.env, process.argv.slice(2));
  const logger = pino({ level: config.logLevel, redact: ['req.headers.authorization', 'req.headers.cookie'] });
  const stops: Array<() => Promise<void>> = [];

  const db = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, poolSize: config.databasePoolSize, applicationName: `switchboard-${config.roles.join('+')}` });
  stops.push(() => db.close());

  let twilio: TwilioConfig;
  let demo: Awaited<ReturnType<typeof startDemoProviders>> | undefined;
  if (config.twilio) {
    twilio = config.twilio;
  } else {
    demo = await startDemoProviders();
    stops.push(() => demo!.fakeTwilio.close());
    twilio = demo.twilio;
  }
  // Messenger and WhatsApp: configured, or in demo mode the fake Graph API; otherwise those channels are off.
  let meta = config.meta;
  let demoMeta: Awaited<ReturnType<typeof startDemoMeta>> | undefined;
  if (!meta && config.demo) {
    demoMeta = await startDemoMeta();
    stops.push(() => demoMeta!.fakeMeta.close());
    meta = demoMeta.meta;
  }
  const adapters = buildAdapters({ publicBaseUrl: config.publicBaseUrl, sendTimeoutMs: config.sendTimeoutMs, twilio, ...(meta ? { meta } : {}) });
  const replyRules: ReplyRules = { now: () => new Date(), templateChannels: meta?.whatsapp?.template ? ['whatsapp'] : [] };

  let webUrl: string | undefined;
  if (config.roles.includes('web')) {
    const web = await startWeb({ db, logger, adapters, publicBaseUrl: config.publicBaseUrl, tokenTtlMs: config.tokenTtlMs, sessionIdleMs: config.sessionIdleMs, host: config.host, port: config.port, replyRules, helpReply: config.helpReply });
    stops.push(() => web.stop());
    webUrl = web.url;
  }
  if (config.roles.includes('worker')) {
    const worker = await startWorker({ db, adapters, logger, maxInFlight: config.outboxBatchSize, sendTimeoutMs: config.sendTimeoutMs, pollMs: config.outboxPollMs, routingTimerPollMs: config.routingTimerPollMs, replyRules });
    stops.push(() => worker.stop());
  }

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    for (const stop of stops.reverse()) await stop().catch((error: unknown) => logger.error({ err: error }, 'stop failed'));
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));

  const lines = [`Switchboard is running (roles: ${config.roles.join(', ')}; storage: ${config.databaseUrl ? 'PostgreSQL' : `PGlite in ${config.dataDir}/pglite`})`];
  if (webUrl) lines.push(`  API:            ${config.publicBaseUrl}/api  (listening on ${webUrl})`);
  if (webUrl) lines.push(`  Web app:        ${config.publicBaseUrl}/  (sign in with a login below)`);
  if (demo && webUrl) {
    const { seeded, info } = await seedDemo({ db, logger, dataDir: config.dataDir, publicBaseUrl: config.publicBaseUrl, fakeTwilio: demo.fakeTwilio, ...(demoMeta ? { fakeMeta: demoMeta.fakeMeta } : {}) });
    lines.push(
      `  Demo mode: no TWILIO_* credentials, so a local fake Twilio stands in: ${info.fakeTwilioUrl}${seeded ? ' (demo data created)' : ''}`,
      `  Demo logins (POST /api/auth/login):`,
      ...DEMO_LOGINS.map((login) => `    ${login.role.padEnd(11)} ${login.email}  ${login.password}`),
      `  Send a patient SMS:  npm run simulate -- sms --from +15551234567 "I need a refill"`,
    );
    if (info.fakeMetaUrl) {
      lines.push(
        `  Messenger and WhatsApp: a local fake Graph API stands in: ${info.fakeMetaUrl}`,
        `    npm run simulate -- messenger --from 24816030402948 "Hi from Messenger"`,
        `    npm run simulate -- whatsapp --from +15551234567 "Hi from WhatsApp"`,
      );
    }
  }
  process.stdout.write(lines.join('\n') + '\n');
}

main().catch((error: unknown) => {
  if (error instanceof ConfigError) {
    process.stderr.write(`${error.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`switchboard failed to start: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
