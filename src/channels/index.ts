import type { Channel } from '../core/types.ts';
import type { ChannelAdapter } from './channel.ts';
import { createTwilioSms } from './twilio-sms.ts';
import { createMessenger } from './meta-messenger.ts';
import { createWhatsApp } from './whatsapp.ts';
import { createTelnyxSms } from './telnyx-sms.ts';
import type { MetaConfig, SmsProvider, SmtpSendConfig, TelnyxConfig, TwilioConfig } from '../config.ts';
import type { Db } from '../db/db.ts';
import { createWebchatChannel } from './webchat.ts';
import { createEmailChannel } from './email.ts';

export interface AdapterSettings {
  publicBaseUrl: string;
  sendTimeoutMs: number;
  twilio?: TwilioConfig;
  /** Which provider carries SMS (SMS_PROVIDER); default twilio. Identities are (channel, address), so switching keeps every patient. */
  smsProvider?: SmsProvider;
  telnyx?: TelnyxConfig;
  meta?: MetaConfig;
  /** The clock Meta's messaging windows are measured with; injectable so tests can let a window close. */
  now?: () => Date;
  /** Web chat's and email's adapters read the outbox row they send (their provider is, or threads through, our database). */
  db?: Db;
  /** The web chat adapter needs no secret (only the page's routes do), so a worker-only process builds it too. */
  webchat?: boolean;
  email?: SmtpSendConfig;
}

/** Builds only the adapters the configuration names, one per channel. */
export function buildAdapters(settings: AdapterSettings): Map<Channel, ChannelAdapter> {
  const adapters = new Map<Channel, ChannelAdapter>();
  if (settings.smsProvider === 'telnyx') {
    if (!settings.telnyx) throw new Error('SMS_PROVIDER=telnyx needs the TELNYX_* settings');
    adapters.set('sms', createTelnyxSms({ ...settings.telnyx, webhookUrl: `${settings.publicBaseUrl}/webhooks/telnyx/sms`, timeoutMs: settings.sendTimeoutMs }));
  } else {
    if (!settings.twilio) throw new Error('SMS_PROVIDER=twilio needs the TWILIO_* settings (or demo mode)');
    adapters.set(
      'sms',
      createTwilioSms({
        ...settings.twilio,
        statusCallbackUrl: `${settings.publicBaseUrl}/webhooks/twilio/status`,
        timeoutMs: settings.sendTimeoutMs,
      }),
    );
  }
  const meta = settings.meta;
  const clock = settings.now ? { now: settings.now } : {};
  if (meta?.messenger) {
    adapters.set(
      'messenger',
      createMessenger({ appSecret: meta.appSecret, verifyToken: meta.verifyToken, graphApiBase: meta.graphApiBase, ...meta.messenger, timeoutMs: settings.sendTimeoutMs, ...clock }),
    );
  }
  if (meta?.whatsapp) {
    const { template, ...whatsapp } = meta.whatsapp;
    adapters.set(
      'whatsapp',
      createWhatsApp({
        appSecret: meta.appSecret,
        verifyToken: meta.verifyToken,
        graphApiBase: meta.graphApiBase,
        ...whatsapp,
        timeoutMs: settings.sendTimeoutMs,
        ...(template ? { whatsappTemplate: template } : {}),
        ...clock,
      }),
    );
  }
  if (settings.db && settings.webchat) adapters.set('webchat', createWebchatChannel({ db: settings.db }));
  if (settings.db && settings.email) adapters.set('email', createEmailChannel({ ...settings.email, timeoutMs: settings.sendTimeoutMs }, { db: settings.db }));
  return adapters;
}
