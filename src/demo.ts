import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { MetaConfig, SmtpSendConfig, TwilioConfig } from './config.ts';
import type { Db } from './db/db.ts';
import { insertCoordinator } from './db/coordinators.ts';
import { seedInboxDemo } from './demo-inbox.ts';
import { hashPassword } from './security/passwords.ts';
import { startFakeTwilio, type FakeTwilio } from './test/fake-twilio.ts';
import { startFakeMeta, type FakeMeta } from './test/fake-meta.ts';
import { startFakeSmtp, type FakeSmtp } from './test/fake-smtp.ts';

/** Demo-mode credentials: they only ever reach the loopback fake. */
export const DEMO_TWILIO = {
  accountSid: 'AC' + '0'.repeat(32),
  authToken: 'demo_auth_token_0123456789abcdef',
  fromNumber: '+15005550006',
};

export const DEMO_LOGINS = [
  { email: 'ada@demo.switchboard.test', name: 'Ada Lovelace', password: 'demo-password-ada', role: 'coordinator' as const },
  { email: 'grace@demo.switchboard.test', name: 'Grace Hopper', password: 'demo-password-grace', role: 'coordinator' as const },
  { email: 'admin@demo.switchboard.test', name: 'Demo Admin', password: 'demo-password-admin', role: 'admin' as const },
  { email: 'sam@demo.switchboard.test', name: 'Sam Supervisor', password: 'demo-password-sam', role: 'supervisor' as const },
];

const DEMO_PATIENT_MESSAGES = [
  { from: '+15551230001', body: 'Hi, can I get a refill on my lisinopril? The pharmacy says it needs approval.' },
  { from: '+15551230002', body: 'I need to reschedule my appointment on Thursday.' },
  { from: '+15551230003', body: 'Does my insurance cover the new prescription?' },
];

export interface DemoInfo {
  fakeTwilioUrl: string;
  smsWebhookUrl: string;
  twilioNumber: string;
  /** Present when the fake Meta stands in for Messenger and WhatsApp. */
  fakeMetaUrl?: string;
  messengerWebhookUrl?: string;
  whatsappWebhookUrl?: string;
  /** Our inbound SMTP listener, for `npm run simulate -- email`. */
  smtpListen?: { host: string; port: number };
  /** For `npm run simulate -- webchat`, which makes a link through the API. */
  publicBaseUrl?: string;
}


/** Demo-mode Meta settings: the app secret and tokens are the fake's own and only ever reach it. */
export const DEMO_META_VERIFY_TOKEN = 'demo-verify-token';
export const DEMO_WHATSAPP_TEMPLATE = { name: 'care_team_followup', languageCode: 'en_US' };

/** Starts the fake Graph API that stands in for Messenger and WhatsApp when no META_* credentials are configured. */
export async function startDemoMeta(): Promise<{ fakeMeta: FakeMeta; meta: MetaConfig }> {
  const fakeMeta = await startFakeMeta();
  const o = fakeMeta.options;
  return {
    fakeMeta,
    meta: {
      appSecret: o.appSecret,
      verifyToken: DEMO_META_VERIFY_TOKEN,
      graphApiBase: fakeMeta.url,
      messenger: { pageId: o.pageId, pageAccessToken: o.pageAccessToken },
      whatsapp: { phoneNumberId: o.phoneNumberId, accessToken: o.whatsappAccessToken, template: DEMO_WHATSAPP_TEMPLATE },
    },
  };
}


/** Demo mode without SMTP_HOST: outbound email goes to a loopback SMTP sink that keeps what it receives. */
export async function startDemoEmail(): Promise<{ fakeSmtp: FakeSmtp; email: SmtpSendConfig }> {
  const fakeSmtp = await startFakeSmtp();
  return { fakeSmtp, email: { host: fakeSmtp.host, port: fakeSmtp.port, secure: false, from: 'Switchboard Demo <care@demo.switchboard.test>', defaultSubject: 'A message from your care team' } };
}

/** Demo mode without WEBCHAT_LINK_SECRET: a random secret, kept in DATA_DIR so links survive a restart. */
export async function loadOrCreateWebchatSecret(dataDir: string): Promise<string> {
  const file = join(dataDir, 'webchat-link-secret');
  const existing = await readFile(file, 'utf8').then((text) => text.trim(), () => '');
  if (existing.length >= 32) return existing;
  await mkdir(dataDir, { recursive: true });
  const secret = randomBytes(32).toString('base64url');
  await writeFile(file, secret, { mode: 0o600 });
  return secret;
}

/** Starts the loopback fakes that stand in for every provider when no credentials are configured. */
export async function startDemoProviders(): Promise<{ fakeTwilio: FakeTwilio; twilio: TwilioConfig }> {
  const fakeTwilio = await startFakeTwilio({
    accountSid: DEMO_TWILIO.accountSid,
    authToken: DEMO_TWILIO.authToken,
    autoStatuses: ['sent', 'delivered'],
    autoStatusDelayMs: 300,
  });
  return { fakeTwilio, twilio: { ...DEMO_TWILIO, apiBase: fakeTwilio.url } };
}

/** Seeds coordinators (first start only) and writes demo.json so `npm run simulate` can find the fakes. */
export async function seedDemo(args: { db: Db; logger: Logger; dataDir: string; publicBaseUrl: string; fakeTwilio: FakeTwilio; fakeMeta?: FakeMeta; smtpListen?: { host: string; port: number } }): Promise<{ seeded: boolean; info: DemoInfo }> {
  const info: DemoInfo = {
    fakeTwilioUrl: args.fakeTwilio.url,
    smsWebhookUrl: `${args.publicBaseUrl}/webhooks/twilio/sms`,
    twilioNumber: DEMO_TWILIO.fromNumber,
    ...(args.fakeMeta
      ? { fakeMetaUrl: args.fakeMeta.url, messengerWebhookUrl: `${args.publicBaseUrl}/webhooks/messenger`, whatsappWebhookUrl: `${args.publicBaseUrl}/webhooks/whatsapp` }
      : {}),
    smtpListen: args.smtpListen,
    publicBaseUrl: args.publicBaseUrl,
  };
  await mkdir(args.dataDir, { recursive: true });
  await writeFile(join(args.dataDir, 'demo.json'), JSON.stringify(info, null, 2));
  const existing = await args.db.query(`SELECT 1 FROM coordinators LIMIT 1`);
  if (existing.rowCount > 0) return { seeded: false, info };
  for (const login of DEMO_LOGINS) {
    await insertCoordinator(args.db, { email: login.email, name: login.name, role: login.role, passwordHash: await hashPassword(login.password) });
  }
  await seedInboxDemo(args.db);
  for (const message of DEMO_PATIENT_MESSAGES) {
    const result = await args.fakeTwilio.sendInboundSms({ webhookUrl: info.smsWebhookUrl, from: message.from, to: DEMO_TWILIO.fromNumber, body: message.body });
    if (result.status !== 200) args.logger.warn({ status: result.status }, 'demo inbound SMS was not accepted');
  }
  return { seeded: true, info };
}
