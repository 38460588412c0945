import { isIP } from 'node:net';
import { resolve } from 'node:path';
import type { CountryCode } from 'libphonenumber-js';
import { z } from 'zod';

export const DEFAULT_HELP_REPLY = 'Your care team reads these messages during business hours. For an emergency call 911. Reply STOP to opt out, START to opt back in.';

const optionalString = z
  .string()
  .trim()
  .transform((value) => (value === '' ? undefined : value))
  .optional();

function isIpOrCidr(entry: string): boolean {
  const [address, bits, extra] = entry.split('/');
  const version = isIP(address ?? '');
  if (version === 0 || extra !== undefined) return false;
  if (bits === undefined) return true;
  return /^\d{1,3}$/.test(bits) && Number(bits) <= (version === 4 ? 32 : 128);
}

const EnvSchema = z
  .object({
    PORT: z.coerce.number().int().min(0).max(65535).default(3000),
    HOST: z.string().default('127.0.0.1'),
    PUBLIC_BASE_URL: optionalString.pipe(z.url().optional()),
    DATABASE_URL: optionalString.pipe(z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL').optional()),
    DATABASE_POOL_SIZE: z.coerce.number().int().min(2).max(200).default(10),
    DATA_DIR: z.string().default('./data'),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    SHUTDOWN_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(15_000),
    TWILIO_ACCOUNT_SID: optionalString.pipe(z.string().regex(/^AC[0-9a-fA-F]{32}$/, 'must look like AC followed by 32 hex digits').optional()),
    TWILIO_AUTH_TOKEN: optionalString,
    TWILIO_FROM_NUMBER: optionalString.pipe(z.string().regex(/^\+[1-9]\d{6,14}$/, 'must be an E.164 number such as +15005550006').optional()),
    TWILIO_MESSAGING_SERVICE_SID: optionalString.pipe(z.string().regex(/^MG[0-9a-fA-F]{32}$/, 'must look like MG followed by 32 hex digits').optional()),
    TWILIO_API_BASE: optionalString.pipe(z.url().optional()),
    SMS_PROVIDER: z.enum(['twilio', 'telnyx']).default('twilio'),
    TELNYX_API_KEY: optionalString,
    TELNYX_PUBLIC_KEY: optionalString.pipe(z.base64().refine((key) => Buffer.from(key, 'base64').length === 32, 'must be the base64 of a 32-byte Ed25519 public key').optional()),
    TELNYX_FROM_NUMBER: optionalString.pipe(z.string().regex(/^\+[1-9]\d{6,14}$/, 'must be an E.164 number such as +15005550006').optional()),
    TELNYX_MESSAGING_PROFILE_ID: optionalString,
    TELNYX_API_BASE: optionalString.pipe(z.url().optional()),
    DEFAULT_PHONE_COUNTRY: z.string().regex(/^[A-Z]{2}$/, 'must be an ISO 3166 alpha-2 country code such as US').default('US'),
    SEND_TIMEOUT_MS: z.coerce.number().int().min(100).max(120_000).default(15_000),
    OUTBOX_BATCH_SIZE: z.coerce.number().int().min(1).max(1000).default(100),
    OUTBOX_POLL_MS: z.coerce.number().int().min(10).max(60_000).default(1_000),
    OUTBOX_SETTLE_MS: z.coerce.number().int().min(0).max(600_000).default(5_000),
    TOKEN_TTL_HOURS: z.coerce.number().min(0.01).max(24 * 30).default(12),
    SESSION_IDLE_MINUTES: z.coerce.number().min(1).max(24 * 60).default(120),
    HTTP_REQUEST_TIMEOUT_MS: z.coerce.number().int().min(1_000).max(600_000).default(60_000),
    HTTP_HEADERS_TIMEOUT_MS: z.coerce.number().int().min(1_000).max(600_000).default(20_000),
    HTTP_KEEP_ALIVE_TIMEOUT_MS: z.coerce.number().int().min(1_000).max(600_000).default(5_000),
    LIVE_STREAMS_PER_COORDINATOR: z.coerce.number().int().min(1).max(1_000).default(5),
    LIVE_STREAMS_PER_PROCESS: z.coerce.number().int().min(1).max(1_000_000).default(2_000),
    WEBCHAT_STREAMS_PER_PATIENT: z.coerce.number().int().min(1).max(1_000).default(3),
    WEBCHAT_STREAMS_PER_PROCESS: z.coerce.number().int().min(1).max(1_000_000).default(2_000),
    VISIT_SOCKETS_PER_PROCESS: z.coerce.number().int().min(1).max(1_000_000).default(1_000),
    VISIT_HELLO_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(10_000),
    // Reverse proxies whose X-Forwarded-For we believe: IPs or CIDRs, comma-separated. Unset: the TCP peer is the client.
    TRUSTED_PROXIES: z
      .string()
      .default('')
      .transform((text) => text.split(',').map((entry) => entry.trim()).filter(Boolean))
      .pipe(z.array(z.string().refine(isIpOrCidr, 'each entry must be an IP address or a CIDR such as 10.0.0.0/8'))),
    // Replaced by TRUSTED_PROXIES; named here only to say so (see superRefine).
    TRUST_PROXY: optionalString,
    ROUTING_TIMER_POLL_MS: z.coerce.number().int().min(100).max(600_000).default(5_000),
    META_APP_SECRET: optionalString,
    META_VERIFY_TOKEN: optionalString,
    META_GRAPH_BASE: optionalString.pipe(z.url().optional()),
    MESSENGER_PAGE_ID: optionalString.pipe(z.string().regex(/^\d+$/, 'must be the numeric Page id').optional()),
    MESSENGER_PAGE_ACCESS_TOKEN: optionalString,
    WHATSAPP_PHONE_NUMBER_ID: optionalString.pipe(z.string().regex(/^\d+$/, 'must be the numeric phone number id').optional()),
    WHATSAPP_ACCESS_TOKEN: optionalString,
    WHATSAPP_TEMPLATE_NAME: optionalString,
    WHATSAPP_TEMPLATE_LANGUAGE: z.string().trim().min(2).default('en_US'),
    HELP_REPLY: z
      .string()
      .trim()
      .min(1)
      .max(1600)
      .default(DEFAULT_HELP_REPLY),
    WEBCHAT_LINK_SECRET: optionalString.pipe(z.string().min(32, 'must be at least 32 characters').optional()),
    WEBCHAT_LINK_TTL_HOURS: z.coerce.number().min(0.01).max(24 * 7).default(24),
    SMTP_LISTEN_HOST: z.string().default('127.0.0.1'),
    SMTP_LISTEN_PORT: z.union([z.literal('off'), z.coerce.number().int().min(0).max(65535)]).default(2525),
    SMTP_HOST: optionalString,
    SMTP_PORT: z.coerce.number().int().min(1).max(65535).default(587),
    SMTP_SECURE: z.enum(['true', 'false']).default('false'),
    SMTP_USER: optionalString,
    SMTP_PASS: optionalString,
    SMTP_FROM: optionalString,
    EMAIL_DEFAULT_SUBJECT: z.string().trim().min(1).max(200).default('A message from your care team'),
    // Calls and recordings (docs/ARCHITECTURE.md "Calls and transcription"); TRANSCRIBER* is read by src/transcription/config.ts.
    TWILIO_VOICE_NUMBER: optionalString.pipe(z.string().regex(/^\+[1-9]\d{6,14}$/, 'must be an E.164 number such as +15005550006').optional()),
    MEDIA_DIR: optionalString,
    // Where recordings are stored (docs/ARCHITECTURE.md §14): local disk, or an S3-compatible bucket shared by every process.
    MEDIA_STORE: z.enum(['local', 's3']).default('local'),
    S3_BUCKET: optionalString.pipe(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{2,254}$/, 'must be a bucket name: 3 or more letters, digits, dots, hyphens or underscores').optional()),
    S3_REGION: z.string().trim().min(1).default('us-east-1'),
    S3_ENDPOINT: optionalString.pipe(z.url().optional()),
    S3_FORCE_PATH_STYLE: z.enum(['true', 'false']).default('false'),
    S3_ACCESS_KEY_ID: optionalString,
    S3_SECRET_ACCESS_KEY: optionalString,
    S3_PREFIX: optionalString.pipe(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._/-]*$/, 'letters, digits and . _ / - only, not starting with /').refine((prefix) => !prefix.includes('..') && !prefix.includes('//'), 'no .. or //').optional()),
    S3_SSE: optionalString.pipe(z.enum(['AES256', 'aws:kms']).optional()),
    S3_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(10).default(3),
    RECORDING_FORMAT: z.enum(['wav', 'mp3']).default('wav'),
    RECORDING_MAX_BYTES: z.coerce.number().int().min(1024).default(200 * 1024 * 1024),
    RECORDING_DOWNLOAD_ATTEMPTS: z.coerce.number().int().min(1).max(50).default(8),
    TRANSCRIPTION_ATTEMPTS: z.coerce.number().int().min(1).max(20).default(3),
    MEDIA_JOB_CONCURRENCY: z.coerce.number().int().min(1).max(16).default(1),
    MEDIA_JOB_LEASE_MS: z.coerce.number().int().min(1_000).max(3_600_000).default(60_000),
    VOICE_DIAL_TIMEOUT_SECONDS: z.coerce.number().int().min(5).max(600).default(20),
    VOICEMAIL_MAX_SECONDS: z.coerce.number().int().min(5).max(3600).default(180),
    VOICE_RECORDING_NOTICE: optionalString,
    VOICEMAIL_GREETING: optionalString,
    VISIT_LINK_TTL_MINUTES: z.coerce.number().int().min(1).max(7 * 24 * 60).default(30),
    VISIT_ICE_SERVERS: optionalString.pipe(
      z
        .string()
        .transform((text, ctx) => {
          try {
            const value: unknown = JSON.parse(text);
            if (Array.isArray(value)) return value as unknown[];
          } catch {}
          ctx.addIssue({ code: 'custom', message: 'must be a JSON array of RTCIceServer, e.g. [{"urls":"stun:stun.example.org"}]' });
          return z.NEVER;
        })
        .optional(),
    ),
    METRICS_TOKEN: optionalString.pipe(z.string().min(16, 'use at least 16 characters').optional()),
    METRICS_PORT: optionalString.pipe(z.string().regex(/^\d+$/, 'a port number').transform(Number).pipe(z.number().int().max(65535)).optional()),
    METRICS_HOST: z.string().default('127.0.0.1'),
    ALERTS_INTERVAL_MS: z.coerce.number().int().min(100).max(600_000).default(15_000),
    ALERT_WEBHOOK_SECRET: optionalString.pipe(z.string().min(16, 'use at least 16 characters').optional()),
    ALERT_TARGETS_ALLOW_PRIVATE: z.enum(['0', '1']).default('0'),
    // Replaced by the channel's SMTP_* settings; named here only to say so (see superRefine).
    SMTP_URL: optionalString,
    ALERT_EMAIL_FROM: optionalString,
  })
  .superRefine((env, ctx) => {
    const twilioSet = [env.TWILIO_ACCOUNT_SID, env.TWILIO_AUTH_TOKEN].filter(Boolean).length;
    if (twilioSet === 1) {
      ctx.addIssue({ code: 'custom', path: [env.TWILIO_ACCOUNT_SID ? 'TWILIO_AUTH_TOKEN' : 'TWILIO_ACCOUNT_SID'], message: 'set both TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN, or neither (demo mode)' });
    }
    if (env.TWILIO_ACCOUNT_SID && !env.TWILIO_FROM_NUMBER && !env.TWILIO_MESSAGING_SERVICE_SID) {
      ctx.addIssue({ code: 'custom', path: ['TWILIO_FROM_NUMBER'], message: 'set TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID' });
    }
    const pairs: Array<[keyof typeof env, keyof typeof env]> = [
      ['MESSENGER_PAGE_ID', 'MESSENGER_PAGE_ACCESS_TOKEN'],
      ['WHATSAPP_PHONE_NUMBER_ID', 'WHATSAPP_ACCESS_TOKEN'],
    ];
    for (const [a, b] of pairs) {
      if (Boolean(env[a]) !== Boolean(env[b])) ctx.addIssue({ code: 'custom', path: [env[a] ? b : a], message: `set both ${a} and ${b}, or neither` });
      if (env[a] && (!env.META_APP_SECRET || !env.META_VERIFY_TOKEN)) {
        ctx.addIssue({ code: 'custom', path: [env.META_APP_SECRET ? 'META_VERIFY_TOKEN' : 'META_APP_SECRET'], message: `${a} needs META_APP_SECRET and META_VERIFY_TOKEN (webhook signature and subscription)` });
      }
    }
    if (env.SMS_PROVIDER === 'telnyx') {
      for (const name of ['TELNYX_API_KEY', 'TELNYX_PUBLIC_KEY'] as const) {
        if (!env[name]) ctx.addIssue({ code: 'custom', path: [name], message: `SMS_PROVIDER=telnyx needs ${name} (demo mode runs the Twilio fake)` });
      }
      if (!env.TELNYX_FROM_NUMBER && !env.TELNYX_MESSAGING_PROFILE_ID) ctx.addIssue({ code: 'custom', path: ['TELNYX_FROM_NUMBER'], message: 'set TELNYX_FROM_NUMBER or TELNYX_MESSAGING_PROFILE_ID' });
    }
    if (env.TRUST_PROXY) ctx.addIssue({ code: 'custom', path: ['TRUST_PROXY'], message: 'X-Forwarded-For is now believed only from TRUSTED_PROXIES (IPs or CIDRs of your reverse proxies); remove TRUST_PROXY' });
    if (env.SMTP_URL) ctx.addIssue({ code: 'custom', path: ['SMTP_URL'], message: 'alert email now uses the SMTP_HOST/SMTP_PORT/SMTP_SECURE/SMTP_USER/SMTP_PASS settings of the email channel; remove SMTP_URL' });
    if (env.MEDIA_STORE === 's3' && !env.S3_BUCKET) ctx.addIssue({ code: 'custom', path: ['S3_BUCKET'], message: 'MEDIA_STORE=s3 needs S3_BUCKET' });
    if (env.MEDIA_STORE === 'local' && env.S3_BUCKET) {
      // Recordings are patient data: a bucket that is configured but unused would put them on local disk unnoticed.
      ctx.addIssue({ code: 'custom', path: ['MEDIA_STORE'], message: 'S3_BUCKET is set but MEDIA_STORE is local: set MEDIA_STORE=s3, or unset S3_BUCKET' });
    }
    if (Boolean(env.S3_ACCESS_KEY_ID) !== Boolean(env.S3_SECRET_ACCESS_KEY)) {
      ctx.addIssue({ code: 'custom', path: [env.S3_ACCESS_KEY_ID ? 'S3_SECRET_ACCESS_KEY' : 'S3_ACCESS_KEY_ID'], message: 'set both S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY, or neither (the AWS SDK default credential chain)' });
    }
    if (env.SMTP_HOST && !env.SMTP_FROM) ctx.addIssue({ code: 'custom', path: ['SMTP_FROM'], message: 'set SMTP_FROM (our From address) with SMTP_HOST' });
  });

export type Role = 'web' | 'worker';

export interface TwilioConfig {
  accountSid: string;
  authToken: string;
  fromNumber?: string;
  messagingServiceSid?: string;
  apiBase?: string;
}

/** Meta's Graph API: Messenger and WhatsApp Cloud share the app secret (webhook signatures) and the verify token. */
export interface MetaConfig {
  appSecret: string;
  verifyToken: string;
  /** Unset means https://graph.facebook.com; demo mode points it at the loopback fake. */
  graphApiBase?: string;
  messenger?: { pageId: string; pageAccessToken: string };
  whatsapp?: { phoneNumberId: string; accessToken: string; template?: { name: string; languageCode: string } };
}

export type SmsProvider = 'twilio' | 'telnyx';

export interface TelnyxConfig {
  apiKey: string;
  publicKey: string;
  fromNumber?: string;
  messagingProfileId?: string;
  apiBase?: string;
}

export interface Config {
  port: number;
  host: string;
  publicBaseUrl: string;
  databaseUrl?: string;
  databasePoolSize: number;
  dataDir: string;
  logLevel: z.infer<typeof EnvSchema>['LOG_LEVEL'];
  /** SIGTERM/SIGINT: what is not stopped by then is logged and the process exits non-zero. */
  shutdownTimeoutMs: number;
  /** Demo mode: no provider credentials, so local fakes stand in for every provider. */
  demo: boolean;
  twilio?: TwilioConfig;
  /** Unset when neither Messenger nor WhatsApp is configured (demo mode then uses the fake Meta). */
  meta?: MetaConfig;
  /** The automatic answer to HELP. */
  helpReply: string;
  smsProvider: SmsProvider;
  telnyx?: TelnyxConfig;
  /** ISO country for reading national phone numbers (identity linking). */
  defaultPhoneCountry: CountryCode;
  sendTimeoutMs: number;
  outboxBatchSize: number;
  outboxPollMs: number;
  /** How long after an unknown send outcome (or a lost claim's deadline) before the provider is asked whether it has the message. */
  outboxSettleMs: number;
  tokenTtlMs: number;
  /** Slow clients are cut off: the whole request, its headers, an idle keep-alive connection. */
  httpTimeouts: { requestMs: number; headersMs: number; keepAliveMs: number };
  /** Caps on open SSE streams and visit WebSockets per web process (and per coordinator / patient), and the visit hello deadline. */
  connectionLimits: {
    liveStreamsPerCoordinator: number;
    liveStreamsPerProcess: number;
    webchatStreamsPerPatient: number;
    webchatStreamsPerProcess: number;
    visitSocketsPerProcess: number;
    visitHelloTimeoutMs: number;
  };
  /** Browser sessions end after this long without a request. */
  sessionIdleMs: number;
  /** IPs/CIDRs of reverse proxies whose X-Forwarded-For names the client; empty: the TCP peer is the client. */
  trustedProxies: string[];
  /** How often the worker looks for due routing fallback timers. */
  routingTimerPollMs: number;
  roles: Role[];
  /** Web chat links; without a secret web chat is off, except in demo mode, which makes and keeps one. */
  webchat: { linkSecret?: string; linkTtlMs: number };
  /** Where inbound email is received over SMTP; null when SMTP_LISTEN_PORT=off. */
  smtpListen: { host: string; port: number } | null;
  /** Outbound email; unset outside demo mode means no email replies. */
  email?: SmtpSendConfig;
  calls: CallsConfig;
  ops: OpsConfig;
}

export interface SmtpSendConfig {
  host: string;
  port: number;
  secure: boolean;
  user?: string;
  pass?: string;
  from: string;
  defaultSubject: string;
}

/** An S3-compatible bucket for recordings (AWS S3, MinIO, Ceph RGW, Cloudflare R2, the loopback fake). */
export interface S3StoreConfig {
  bucket: string;
  region: string;
  /** Unset: AWS's endpoint for the region. */
  endpoint?: string;
  /** `/bucket/key` URLs instead of `bucket.host/key`: MinIO, Ceph and loopback endpoints need it. */
  forcePathStyle: boolean;
  /** Unset: the AWS SDK's default credential chain (AWS_* variables, shared config/SSO, web identity, ECS/EC2 roles). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Put before every key: '' or ending in '/'. */
  prefix: string;
  /** x-amz-server-side-encryption for every object written; unset leaves it to the bucket's default encryption. */
  sse?: 'AES256' | 'aws:kms';
  /** Attempts per S3 request, the first included (the SDK's standard retry mode). */
  maxAttempts: number;
}

export type MediaStoreConfig = { kind: 'local'; dir: string } | ({ kind: 's3' } & S3StoreConfig);

export interface CallsConfig {
  /** Caller ID for click-to-call: TWILIO_VOICE_NUMBER, else TWILIO_FROM_NUMBER. */
  voiceNumber?: string;
  /** MEDIA_STORE: local disk under MEDIA_DIR, or an S3-compatible bucket. Every process (web and worker) must use the same one. */
  media: MediaStoreConfig;
  recordingFormat: 'wav' | 'mp3';
  recordingMaxBytes: number;
  downloadMaxAttempts: number;
  transcribeMaxAttempts: number;
  jobConcurrency: number;
  jobLeaseMs: number;
  dialTimeoutSec: number;
  voicemailMaxSec: number;
  recordingNotice?: string;
  voicemailGreeting?: string;
  visitLinkTtlMinutes?: number;
  /** RTCIceServer[] for video visits (STUN/TURN), from VISIT_ICE_SERVERS as JSON. */
  visitIceServers?: unknown[];
}

export interface OpsConfig {
  /** GET /metrics on the main port needs this bearer token; unset = not served there. */
  metricsToken?: string;
  /** A separate listener that serves only /metrics, unauthenticated: bind it to loopback or a private network. */
  metricsPort?: number;
  metricsHost: string;
  alertsIntervalMs: number;
  alertWebhookSecret?: string;
  /** Slack/webhook alert targets may be loopback, private or link-local addresses (off: they are refused). */
  alertTargetsAllowPrivate?: boolean;
  /** From address of alert email (default SMTP_FROM); sent through the email channel's SMTP server. */
  alertEmailFrom?: string;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

/** Parses the environment once, listing every problem rather than the first. */
export function parseConfig(env: Record<string, string | undefined>, argv: readonly string[] = []): Config {
  const parsed = EnvSchema.safeParse(env);
  const problems = parsed.success ? [] : parsed.error.issues.map((issue) => `${issue.path.join('.') || '(env)'}: ${issue.message}`);
  const roles = parseRoles(argv, problems);
  if (parsed.success && !parsed.data.DATABASE_URL && roles.length === 1) {
    problems.push('--role: the embedded PGlite store lives in one process, so running one role alone needs DATABASE_URL (PostgreSQL)');
  }
  if (!parsed.success || problems.length > 0) throw new ConfigError(problems);
  const e = parsed.data;
  const twilio: TwilioConfig | undefined = e.TWILIO_ACCOUNT_SID
    ? {
        accountSid: e.TWILIO_ACCOUNT_SID,
        authToken: e.TWILIO_AUTH_TOKEN!,
        fromNumber: e.TWILIO_FROM_NUMBER,
        messagingServiceSid: e.TWILIO_MESSAGING_SERVICE_SID,
        apiBase: e.TWILIO_API_BASE,
      }
    : undefined;
  return {
    port: e.PORT,
    host: e.HOST,
    publicBaseUrl: (e.PUBLIC_BASE_URL ?? `http://127.0.0.1:${e.PORT}`).replace(/\/$/, ''),
    databaseUrl: e.DATABASE_URL,
    databasePoolSize: e.DATABASE_POOL_SIZE,
    dataDir: resolve(e.DATA_DIR),
    logLevel: e.LOG_LEVEL,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    demo: e.SMS_PROVIDER === 'telnyx' ? false : !twilio,
    twilio,
    meta:
      e.MESSENGER_PAGE_ID || e.WHATSAPP_PHONE_NUMBER_ID
        ? {
            appSecret: e.META_APP_SECRET!,
            verifyToken: e.META_VERIFY_TOKEN!,
            graphApiBase: e.META_GRAPH_BASE,
            ...(e.MESSENGER_PAGE_ID ? { messenger: { pageId: e.MESSENGER_PAGE_ID, pageAccessToken: e.MESSENGER_PAGE_ACCESS_TOKEN! } } : {}),
            ...(e.WHATSAPP_PHONE_NUMBER_ID
              ? {
                  whatsapp: {
                    phoneNumberId: e.WHATSAPP_PHONE_NUMBER_ID,
                    accessToken: e.WHATSAPP_ACCESS_TOKEN!,
                    ...(e.WHATSAPP_TEMPLATE_NAME ? { template: { name: e.WHATSAPP_TEMPLATE_NAME, languageCode: e.WHATSAPP_TEMPLATE_LANGUAGE } } : {}),
                  },
                }
              : {}),
          }
        : undefined,
    helpReply: e.HELP_REPLY,
    smsProvider: e.SMS_PROVIDER,
    telnyx: e.TELNYX_API_KEY
      ? { apiKey: e.TELNYX_API_KEY, publicKey: e.TELNYX_PUBLIC_KEY!, fromNumber: e.TELNYX_FROM_NUMBER, messagingProfileId: e.TELNYX_MESSAGING_PROFILE_ID, apiBase: e.TELNYX_API_BASE }
      : undefined,
    defaultPhoneCountry: e.DEFAULT_PHONE_COUNTRY as CountryCode,
    sendTimeoutMs: e.SEND_TIMEOUT_MS,
    outboxBatchSize: e.OUTBOX_BATCH_SIZE,
    outboxPollMs: e.OUTBOX_POLL_MS,
    outboxSettleMs: e.OUTBOX_SETTLE_MS,
    tokenTtlMs: e.TOKEN_TTL_HOURS * 3_600_000,
    httpTimeouts: { requestMs: e.HTTP_REQUEST_TIMEOUT_MS, headersMs: e.HTTP_HEADERS_TIMEOUT_MS, keepAliveMs: e.HTTP_KEEP_ALIVE_TIMEOUT_MS },
    connectionLimits: {
      liveStreamsPerCoordinator: e.LIVE_STREAMS_PER_COORDINATOR,
      liveStreamsPerProcess: e.LIVE_STREAMS_PER_PROCESS,
      webchatStreamsPerPatient: e.WEBCHAT_STREAMS_PER_PATIENT,
      webchatStreamsPerProcess: e.WEBCHAT_STREAMS_PER_PROCESS,
      visitSocketsPerProcess: e.VISIT_SOCKETS_PER_PROCESS,
      visitHelloTimeoutMs: e.VISIT_HELLO_TIMEOUT_MS,
    },
    sessionIdleMs: e.SESSION_IDLE_MINUTES * 60_000,
    trustedProxies: e.TRUSTED_PROXIES,
    routingTimerPollMs: e.ROUTING_TIMER_POLL_MS,
    roles,
    webchat: { linkSecret: e.WEBCHAT_LINK_SECRET, linkTtlMs: e.WEBCHAT_LINK_TTL_HOURS * 3_600_000 },
    smtpListen: e.SMTP_LISTEN_PORT === 'off' ? null : { host: e.SMTP_LISTEN_HOST, port: e.SMTP_LISTEN_PORT },
    email: e.SMTP_HOST
      ? { host: e.SMTP_HOST, port: e.SMTP_PORT, secure: e.SMTP_SECURE === 'true', user: e.SMTP_USER, pass: e.SMTP_PASS, from: e.SMTP_FROM!, defaultSubject: e.EMAIL_DEFAULT_SUBJECT }
      : undefined,
    calls: {
      voiceNumber: e.TWILIO_VOICE_NUMBER ?? e.TWILIO_FROM_NUMBER,
      media:
        e.MEDIA_STORE === 's3'
          ? {
              kind: 's3',
              bucket: e.S3_BUCKET!,
              region: e.S3_REGION,
              endpoint: e.S3_ENDPOINT,
              forcePathStyle: e.S3_FORCE_PATH_STYLE === 'true',
              ...(e.S3_ACCESS_KEY_ID ? { credentials: { accessKeyId: e.S3_ACCESS_KEY_ID, secretAccessKey: e.S3_SECRET_ACCESS_KEY! } } : {}),
              prefix: e.S3_PREFIX ? e.S3_PREFIX.replace(/\/*$/, '/') : '',
              sse: e.S3_SSE,
              maxAttempts: e.S3_MAX_ATTEMPTS,
            }
          : { kind: 'local', dir: resolve(e.MEDIA_DIR ?? `${e.DATA_DIR}/media`) },
      recordingFormat: e.RECORDING_FORMAT,
      recordingMaxBytes: e.RECORDING_MAX_BYTES,
      downloadMaxAttempts: e.RECORDING_DOWNLOAD_ATTEMPTS,
      transcribeMaxAttempts: e.TRANSCRIPTION_ATTEMPTS,
      jobConcurrency: e.MEDIA_JOB_CONCURRENCY,
      jobLeaseMs: e.MEDIA_JOB_LEASE_MS,
      dialTimeoutSec: e.VOICE_DIAL_TIMEOUT_SECONDS,
      voicemailMaxSec: e.VOICEMAIL_MAX_SECONDS,
      recordingNotice: e.VOICE_RECORDING_NOTICE,
      voicemailGreeting: e.VOICEMAIL_GREETING,
      visitLinkTtlMinutes: e.VISIT_LINK_TTL_MINUTES,
      visitIceServers: e.VISIT_ICE_SERVERS,
    },
    ops: {
      metricsToken: e.METRICS_TOKEN,
      metricsPort: e.METRICS_PORT,
      metricsHost: e.METRICS_HOST,
      alertsIntervalMs: e.ALERTS_INTERVAL_MS,
      alertWebhookSecret: e.ALERT_WEBHOOK_SECRET,
      alertTargetsAllowPrivate: e.ALERT_TARGETS_ALLOW_PRIVATE === '1',
      alertEmailFrom: e.ALERT_EMAIL_FROM,
    },
  };
}

function parseRoles(argv: readonly string[], problems: string[]): Role[] {
  const index = argv.indexOf('--role');
  if (index === -1) return ['web', 'worker'];
  const value = argv[index + 1];
  if (value === 'web' || value === 'worker') return [value];
  if (value === 'all') return ['web', 'worker'];
  problems.push(`--role: expected web, worker or all, got ${value ?? 'nothing'}`);
  return [];
}
