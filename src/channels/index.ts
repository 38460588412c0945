import type { Channel } from '../core/types.ts';
import type { ChannelAdapter } from './channel.ts';
import { createTwilioSms } from './twilio-sms.ts';
import type { SmtpSendConfig, TwilioConfig } from '../config.ts';
import type { Db } from '../db/db.ts';
import { createWebchatChannel } from './webchat.ts';
import { createEmailChannel } from './email.ts';

export interface AdapterSettings {
  publicBaseUrl: string;
  sendTimeoutMs: number;
  twilio: TwilioConfig;
  /** Web chat's and email's adapters read the outbox row they send (their provider is, or threads through, our database). */
  db?: Db;
  /** The web chat adapter needs no secret (only the page's routes do), so a worker-only process builds it too. */
  webchat?: boolean;
  email?: SmtpSendConfig;
}

/** Builds only the adapters the configuration names, one per channel. */
export function buildAdapters(settings: AdapterSettings): Map<Channel, ChannelAdapter> {
  const adapters = new Map<Channel, ChannelAdapter>();
  adapters.set(
    'sms',
    createTwilioSms({
      ...settings.twilio,
      statusCallbackUrl: `${settings.publicBaseUrl}/webhooks/twilio/status`,
      timeoutMs: settings.sendTimeoutMs,
    }),
  );
  if (settings.db && settings.webchat) adapters.set('webchat', createWebchatChannel({ db: settings.db }));
  if (settings.db && settings.email) adapters.set('email', createEmailChannel({ ...settings.email, timeoutMs: settings.sendTimeoutMs }, { db: settings.db }));
  return adapters;
}
