import { buildAdapters } from './channels/index.ts';
import { ConfigError, parseConfig, type TwilioConfig } from './config.ts';
import { DataDirInUse, lockDataDir } from './db/data-dir-lock.ts';
import { openDatabase } from './db/open.ts';
import { DEMO_LOGINS, loadOrCreateWebchatSecret, seedDemo, startDemoEmail, startDemoMeta, startDemoProviders } from './demo.ts';
import type { ReplyRules } from './core/reply-channel.ts';
import { createControlHandler } from './services/control-socket.ts';
import { startSmtpListener } from './services/smtp-listener.ts';
import { startWeb } from './services/web.ts';
import { startWorker } from './services/worker.ts';
import { buildCallSettings, createMediaStorage, startCallsWorker } from './calls/index.ts';
import { createTranscriber, parseTranscriptionConfig } from './transcription/config.ts';
import { createOpsMetrics } from './ops/metrics.ts';
import { startOps } from './ops/start.ts';
import { createProcessLog } from './logging.ts';

/** How long a stop may spend writing out the last log lines: stdout may be stuck, and that must not hold the exit. */
const FINAL_LOG_FLUSH_MS = 200;

/** The composition root: config → dependencies → roles; every start has a stop, run in reverse. */
async function main(): Promise<void> {
  const config = parseConfig(process.env, process.argv.slice(2));
  const log = createProcessLog({ level: config.logLevel });
  const logger = log.logger;
  // The banner below is the one write to stdout outside the logger: a reader that has gone must not crash us.
  process.stdout.on('error', () => {});
  const stops: Array<{ name: string; stop: () => Promise<void> }> = [];
  const onStop = (name: string, stop: () => Promise<void>) => stops.push({ name, stop });

  // Embedded PGlite is one process: hold DATA_DIR before opening it, and serve the CLI's writes (docs/ARCHITECTURE.md §11).
  const dataDirLock = config.databaseUrl ? undefined : await lockDataDir(config.dataDir, { role: 'server' });
  if (dataDirLock) onStop('data dir lock', () => dataDirLock.release());
  const db = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, poolSize: config.databasePoolSize, applicationName: `switchboard-${config.roles.join('+')}` });
  onStop('database', () => db.close());
  dataDirLock?.serve(createControlHandler({ db, logger }));

  let twilio: TwilioConfig | undefined = config.twilio;
  let demo: Awaited<ReturnType<typeof startDemoProviders>> | undefined;
  if (config.demo) {
    demo = await startDemoProviders();
    onStop('demo fake Twilio', () => demo!.fakeTwilio.close());
    twilio = demo.twilio;
  }
  // Messenger and WhatsApp: configured, or in demo mode the fake Graph API; otherwise those channels are off.
  let meta = config.meta;
  let demoMeta: Awaited<ReturnType<typeof startDemoMeta>> | undefined;
  if (!meta && config.demo) {
    demoMeta = await startDemoMeta();
    onStop('demo fake Meta', () => demoMeta!.fakeMeta.close());
    meta = demoMeta.meta;
  }
  const webchatSecret = config.webchat.linkSecret ?? (config.demo ? await loadOrCreateWebchatSecret(config.dataDir) : undefined);
  let email = config.email;
  if (!email && config.demo) {
    const demoEmail = await startDemoEmail();
    onStop('demo fake SMTP', () => demoEmail.fakeSmtp.close());
    email = demoEmail.email;
  }
  const adapters = buildAdapters({ publicBaseUrl: config.publicBaseUrl, sendTimeoutMs: config.sendTimeoutMs, twilio, smsProvider: config.smsProvider, telnyx: config.telnyx, ...(meta ? { meta } : {}), db, webchat: true, email });
  const metrics = createOpsMetrics({ droppedLogLines: log.droppedLines });
  const replyRules: ReplyRules = { now: () => new Date(), templateChannels: meta?.whatsapp?.template ? ['whatsapp'] : [] };

  const mediaStorage = await createMediaStorage(config.calls.media);

  let webUrl: string | undefined;
  if (config.roles.includes('web')) {
    // Calls are Twilio Voice: without Twilio credentials (SMS_PROVIDER=telnyx, no TWILIO_*) they are off.
    const calls = twilio ? buildCallSettings({ config: config.calls, twilio, storage: mediaStorage, timeoutMs: config.sendTimeoutMs }) : undefined;
    const webchat = webchatSecret ? { linkSecret: webchatSecret, linkTtlMs: config.webchat.linkTtlMs } : undefined;
    const web = await startWeb({ db, logger, adapters, publicBaseUrl: config.publicBaseUrl, tokenTtlMs: config.tokenTtlMs, sessionIdleMs: config.sessionIdleMs, trustedProxies: config.trustedProxies, host: config.host, port: config.port, replyRules, helpReply: config.helpReply, defaultPhoneCountry: config.defaultPhoneCountry, webchat, calls, metrics, metricsToken: config.ops.metricsToken, alertTargetsAllowPrivate: config.ops.alertTargetsAllowPrivate, httpTimeouts: config.httpTimeouts, connectionLimits: config.connectionLimits });
    onStop('web', () => web.stop());
    webUrl = web.url;
  }
  let smtpListen: { host: string; port: number } | undefined;
  if (config.roles.includes('web') && config.smtpListen) {
    const listen = (port: number) => startSmtpListener({ db, logger, host: config.smtpListen!.host, port });
    // Several demos (or test runs) on one machine would fight over the default port; a demo takes any free one
    // (demo.json tells `npm run simulate` which). Outside demo mode a taken port is a configuration error.
    const listener = await listen(config.smtpListen.port).catch((error: { code?: string }) => {
      if (!config.demo || error.code !== 'EADDRINUSE') throw error;
      logger.warn({ port: config.smtpListen!.port }, 'SMTP port in use; the demo listens on a free port instead');
      return listen(0);
    });
    onStop('SMTP listener', () => listener.stop());
    smtpListen = { host: config.smtpListen.host, port: listener.port };
  }
  if (config.roles.includes('worker')) {
    const worker = await startWorker({ db, adapters, logger, maxInFlight: config.outboxBatchSize, sendTimeoutMs: config.sendTimeoutMs, pollMs: config.outboxPollMs, settleMs: config.outboxSettleMs, routingTimerPollMs: config.routingTimerPollMs, replyRules, metrics });
    onStop('worker', () => worker.stop());
    if (twilio) {
      const transcriber = createTranscriber(parseTranscriptionConfig(process.env, config.dataDir));
      const callsWorker = await startCallsWorker({ db, logger, config: config.calls, twilio, storage: mediaStorage, transcriber });
      onStop('calls worker', () => callsWorker.stop());
      // The boosted language model (about 8 s of CPU, then cached under DATA_DIR) is built by the first recording
      // that needs it, not at start-up: a worker that restarts often, or never sees a call, must not pay for it.
    }
  }
  const ops = await startOps({ db, logger, adapters, metrics, config: config.ops, evaluateAlerts: config.roles.includes('worker'), ...(email ? { email: { ...email, timeoutMs: config.sendTimeoutMs } } : {}) });
  onStop('ops', () => ops.stop());

  // Stops run in reverse under one deadline; a stop that hangs (a socket that never closes, a stuck log pipe)
  // must not keep a process that was told to go. A second signal means "now".
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal while stopping; exiting now');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal, deadlineMs: config.shutdownTimeoutMs }, 'stopping');
    const remaining = stops.map((entry) => entry.name).reverse();
    setTimeout(() => {
      logger.error({ pending: remaining }, 'shutdown deadline passed; exiting with these stops unfinished');
      void log.flush(FINAL_LOG_FLUSH_MS).then(() => process.exit(1));
    }, config.shutdownTimeoutMs);
    for (const { name, stop } of [...stops].reverse()) {
      await stop().catch((error: unknown) => logger.error({ err: error, stop: name }, 'stop failed'));
      remaining.shift();
    }
    await log.flush(FINAL_LOG_FLUSH_MS);
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));

  const lines = [`Switchboard is running (roles: ${config.roles.join(', ')}; storage: ${config.databaseUrl ? 'PostgreSQL' : `PGlite in ${config.dataDir}/pglite`})`];
  if (webUrl) lines.push(`  API:            ${config.publicBaseUrl}/api  (listening on ${webUrl})`);
  if (webUrl) lines.push(`  Web app:        ${config.publicBaseUrl}/  (sign in with a login below)`);
  if (smtpListen) lines.push(`  Inbound email:  SMTP on ${smtpListen.host}:${smtpListen.port}`);
  if (webUrl && !webchatSecret) lines.push('  Web chat:       off (set WEBCHAT_LINK_SECRET)');
  const media = config.calls.media;
  if (twilio) lines.push(`  Recordings:     ${media.kind === 's3' ? `s3://${media.bucket}/${media.prefix}${media.endpoint ? ` at ${media.endpoint}` : ''}` : media.dir}`);
  if (ops.metricsUrl) lines.push(`  Metrics:        ${ops.metricsUrl}  (no token: keep this listener private)`);
  if (demo && webUrl) {
    const { seeded, info } = await seedDemo({ db, logger, dataDir: config.dataDir, publicBaseUrl: config.publicBaseUrl, fakeTwilio: demo.fakeTwilio, ...(demoMeta ? { fakeMeta: demoMeta.fakeMeta } : {}), smtpListen });
    lines.push(
      `  Demo mode: no TWILIO_* credentials, so a local fake Twilio stands in: ${info.fakeTwilioUrl}${seeded ? ' (demo data created)' : ''}`,
      `  Demo logins (POST /api/auth/login):`,
      ...DEMO_LOGINS.map((login) => `    ${login.role.padEnd(11)} ${login.email}  ${login.password}`),
      `  Send a patient SMS:  npm run simulate -- sms --from +15551234567 "I need a refill"`,
      `  Send a patient email: npm run simulate -- email --from pat@example.org "Can I move my appointment?"`,
      `  Open a patient chat: npm run simulate -- webchat --patient <patient id>  (prints a chat link)`,
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
  if (error instanceof DataDirInUse) {
    process.stderr.write(`${error.message}\n`);
    process.exit(3);
  }
  process.stderr.write(`switchboard failed to start: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
