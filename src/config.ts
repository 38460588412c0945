import { resolve } from 'node:path';
import { z } from 'zod';

export const DEFAULT_HELP_REPLY = 'Your care team reads these messages during business hours. For an emergency call 911. Reply STOP to opt out, START to opt back in.';

const optionalString = z
  .string()
  .trim()
  .transform((value) => (value === '' ? undefined : value))
  .optional();

const EnvSchema = z
  .object({
    PORT: z.coerce.number().int().min(0).max(65535).default(3000),
    HOST: z.string().default('127.0.0.1'),
    PUBLIC_BASE_URL: optionalString.pipe(z.url().optional()),
    DATABASE_URL: optionalString.pipe(z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL').optional()),
    DATABASE_POOL_SIZE: z.coerce.number().int().min(2).max(200).default(10),
    DATA_DIR: z.string().default('./data'),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    TWILIO_ACCOUNT_SID: optionalString.pipe(z.string().regex(/^AC[0-9a-fA-F]{32}$/, 'must look like AC followed by 32 hex digits').optional()),
    TWILIO_AUTH_TOKEN: optionalString,
    TWILIO_FROM_NUMBER: optionalString.pipe(z.string().regex(/^\+[1-9]\d{6,14}$/, 'must be an E.164 number such as +15005550006').optional()),
    TWILIO_MESSAGING_SERVICE_SID: optionalString.pipe(z.string().regex(/^MG[0-9a-fA-F]{32}$/, 'must look like MG followed by 32 hex digits').optional()),
    TWILIO_API_BASE: optionalString.pipe(z.url().optional()),
    SEND_TIMEOUT_MS: z.coerce.number().int().min(100).max(120_000).default(15_000),
    OUTBOX_BATCH_SIZE: z.coerce.number().int().min(1).max(1000).default(100),
    OUTBOX_POLL_MS: z.coerce.number().int().min(10).max(60_000).default(1_000),
    TOKEN_TTL_HOURS: z.coerce.number().min(0.01).max(24 * 30).default(12),
    SESSION_IDLE_MINUTES: z.coerce.number().min(1).max(24 * 60).default(120),
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

export interface Config {
  port: number;
  host: string;
  publicBaseUrl: string;
  databaseUrl?: string;
  databasePoolSize: number;
  dataDir: string;
  logLevel: z.infer<typeof EnvSchema>['LOG_LEVEL'];
  /** Demo mode: no provider credentials, so local fakes stand in for every provider. */
  demo: boolean;
  twilio?: TwilioConfig;
  /** Unset when neither Messenger nor WhatsApp is configured (demo mode then uses the fake Meta). */
  meta?: MetaConfig;
  /** The automatic answer to HELP. */
  helpReply: string;
  sendTimeoutMs: number;
  outboxBatchSize: number;
  outboxPollMs: number;
  tokenTtlMs: number;
  /** Browser sessions end after this long without a request. */
  sessionIdleMs: number;
  /** How often the worker looks for due routing fallback timers. */
  routingTimerPollMs: number;
  roles: Role[];
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
    demo: !twilio,
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
    sendTimeoutMs: e.SEND_TIMEOUT_MS,
    outboxBatchSize: e.OUTBOX_BATCH_SIZE,
    outboxPollMs: e.OUTBOX_POLL_MS,
    tokenTtlMs: e.TOKEN_TTL_HOURS * 3_600_000,
    sessionIdleMs: e.SESSION_IDLE_MINUTES * 60_000,
    routingTimerPollMs: e.ROUTING_TIMER_POLL_MS,
    roles,
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
