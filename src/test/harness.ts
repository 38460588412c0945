import { createServer } from 'node:net';
import pino from 'pino';
import { buildAdapters } from '../channels/index.ts';
import type { ChannelAdapter } from '../channels/channel.ts';
import type { Channel } from '../core/types.ts';
import { insertCoordinator } from '../db/coordinators.ts';
import { startOutboxRelay, type OutboxRelay, type OutboxRelayOptions } from '../outbox/relay.ts';
import { hashPassword } from '../security/passwords.ts';
import { startWeb, type WebService } from '../services/web.ts';
import type { AppDeps } from '../http/server.ts';
import type { TestBackend, TestDatabase } from './databases.ts';
import { startFakeTwilio, type FakeTwilio, type FakeTwilioOptions } from './fake-twilio.ts';
import { startFakeMeta, type FakeMeta } from './fake-meta.ts';
import type { ReplyRules } from '../core/reply-channel.ts';
import type { MediaStoreConfig, MetaConfig } from '../config.ts';
import { startFakeSmtp, type FakeSmtp } from './fake-smtp.ts';
import { startSmtpListener, type SmtpListener } from '../services/smtp-listener.ts';

export const TEST_WEBCHAT_SECRET = 'test-webchat-link-secret-0123456789abcdef';
export const TEST_EMAIL_FROM = 'Care Team <care@switchboard.test>';
import { buildCallSettings, createMediaStorage, DEFAULT_CALLS_CONFIG } from '../calls/index.ts';

export const TEST_TWILIO = {
  accountSid: 'AC' + 'a'.repeat(32),
  authToken: 'test_auth_token_0123456789abcdef',
  fromNumber: '+15005550006',
};

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (!address || typeof address === 'string') throw new Error('no port');
  return address.port;
}

export interface ApiResponse<T = any> {
  status: number;
  json: T;
  text: string;
}

/** A real server on loopback, a real database and the fake Twilio: what a provider and a coordinator would talk to. */
export interface Harness {
  database: TestDatabase;
  fake: FakeTwilio;
  adapters: Map<Channel, ChannelAdapter>;
  web: WebService;
  baseUrl: string;
  api<T = any>(method: string, path: string, options?: { token?: string; body?: unknown; rawBody?: string; contentType?: string }): Promise<ApiResponse<T>>;
  createCoordinator(args: { name: string; role?: 'coordinator' | 'supervisor' | 'admin' }): Promise<{ id: string; email: string; password: string; token: string }>;
  sendSms(from: string, body: string, messageSid?: string): Promise<{ status: number; body: string; messageSid: string }>;
  startRelay(options?: Partial<OutboxRelayOptions>): Promise<OutboxRelay>;
  /** Present when started with `meta`: the fake Graph API behind the Messenger and WhatsApp adapters. */
  meta?: FakeMeta;
  close(): Promise<void>;
  /** With `email: true`: the fake outbound SMTP server, and our inbound SMTP listener. */
  smtp?: FakeSmtp;
  smtpListener?: SmtpListener;
}

export const TEST_META_VERIFY_TOKEN = 'test-verify-token';

export interface HarnessMetaOptions {
  /** The app's clock (Meta's windows, reply choice); default real time. */
  now?: () => Date;
  whatsappTemplate?: { name: string; languageCode: string };
}

export async function startHarness(backend: TestBackend, options: { fake?: Partial<FakeTwilioOptions>; meta?: HarnessMetaOptions; webchat?: boolean; email?: boolean; calls?: { media: MediaStoreConfig }; app?: Partial<AppDeps> } = {}): Promise<Harness> {
  const database = await backend.create();
  const fake = await startFakeTwilio({ accountSid: TEST_TWILIO.accountSid, authToken: TEST_TWILIO.authToken, ...options.fake });
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const fakeMeta = options.meta ? await startFakeMeta() : undefined;
  const meta: MetaConfig | undefined = fakeMeta && {
    appSecret: fakeMeta.options.appSecret,
    verifyToken: TEST_META_VERIFY_TOKEN,
    graphApiBase: fakeMeta.url,
    messenger: { pageId: fakeMeta.options.pageId, pageAccessToken: fakeMeta.options.pageAccessToken },
    whatsapp: { phoneNumberId: fakeMeta.options.phoneNumberId, accessToken: fakeMeta.options.whatsappAccessToken, ...(options.meta?.whatsappTemplate ? { template: options.meta.whatsappTemplate } : {}) },
  };
  const now = options.meta?.now;
  const replyRules: ReplyRules | undefined = options.meta ? { now: now ?? (() => new Date()), templateChannels: options.meta.whatsappTemplate ? ['whatsapp'] : [] } : undefined;
  const smtp = options.email ? await startFakeSmtp() : undefined;
  const email = smtp ? { host: smtp.host, port: smtp.port, secure: false, from: TEST_EMAIL_FROM, defaultSubject: 'A message from your care team' } : undefined;
  const adapters = buildAdapters({ publicBaseUrl: baseUrl, sendTimeoutMs: 2_000, twilio: { ...TEST_TWILIO, apiBase: fake.url }, ...(meta ? { meta } : {}), ...(now ? { now } : {}), db: database.db, webchat: options.webchat, email });
  const calls = options.calls
    ? buildCallSettings({ config: { ...DEFAULT_CALLS_CONFIG, media: options.calls.media, downloadMaxAttempts: 3 }, twilio: { ...TEST_TWILIO, apiBase: fake.url }, storage: await createMediaStorage(options.calls.media), timeoutMs: 2_000 })
    : undefined;
  const webchat = options.webchat ? { linkSecret: TEST_WEBCHAT_SECRET, linkTtlMs: 3_600_000 } : undefined;
  const web = await startWeb({ db: database.db, logger, adapters, publicBaseUrl: baseUrl, tokenTtlMs: 3_600_000, host: '127.0.0.1', port, ...(replyRules ? { replyRules } : {}), webchat, calls, ...options.app });
  const smtpListener = options.email ? await startSmtpListener({ db: database.db, logger, host: '127.0.0.1', port: 0 }) : undefined;
  const relays: OutboxRelay[] = [];
  let coordinatorCount = 0;

  const harness: Harness = {
    database,
    fake,
    adapters,
    web,
    baseUrl,
    ...(fakeMeta ? { meta: fakeMeta } : {}),
    smtp,
    smtpListener,
    async api(method, path, { token, body, rawBody, contentType } = {}) {
      const headers: Record<string, string> = {};
      if (token) headers.authorization = `Bearer ${token}`;
      let payload: string | undefined = rawBody;
      if (body !== undefined) {
        payload = JSON.stringify(body);
        headers['content-type'] = 'application/json';
      }
      if (contentType) headers['content-type'] = contentType;
      const response = await fetch(baseUrl + path, { method, headers, body: payload });
      const text = await response.text();
      let json: any = null;
      try {
        json = text ? JSON.parse(text) : null;
      } catch {
        json = null;
      }
      return { status: response.status, json, text };
    },
    async createCoordinator({ name, role = 'coordinator' }) {
      coordinatorCount += 1;
      const email = `${name.toLowerCase().replace(/\W+/g, '.')}.${coordinatorCount}@test.switchboard`;
      const password = `password-for-${name}-${coordinatorCount}`;
      const created = await insertCoordinator(database.db, { email, name, role, passwordHash: await hashPassword(password) });
      if (!created) throw new Error('coordinator exists');
      const login = await harness.api('POST', '/api/auth/login', { body: { email, password } });
      if (login.status !== 200) throw new Error(`login failed: ${login.text}`);
      return { id: created.id, email, password, token: login.json.token };
    },
    sendSms(from, body, messageSid) {
      return fake.sendInboundSms({ webhookUrl: `${baseUrl}/webhooks/twilio/sms`, from, to: TEST_TWILIO.fromNumber, body, messageSid });
    },
    async startRelay(overrides = {}) {
      const relay = await startOutboxRelay({ db: database.db, adapters, logger, maxInFlight: 50, sendTimeoutMs: 2_000, pollMs: 200, backoff: { baseMs: 20, capMs: 200 },
        // The loopback fakes answer in milliseconds: a short settle keeps lookups quick without racing them.
        settleMs: 300, ...(replyRules ? { replyRules } : {}), ...overrides });
      relays.push(relay);
      return relay;
    },
    async close() {
      for (const relay of relays.splice(0)) await relay.stop();
      await web.stop();
      await smtpListener?.stop();
      await smtp?.close();
      await fake.close();
      await fakeMeta?.close();
      await database.drop();
    },
  };
  return harness;
}

/** Polls until `check` returns a truthy value or the deadline passes; never a fixed sleep. */
export async function eventually<T>(check: () => Promise<T | undefined | null | false> | T | undefined | null | false, { timeoutMs = 10_000, intervalMs = 25, what = 'condition' } = {}): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`, { cause: lastError });
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
