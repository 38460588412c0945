import type { Channel } from '../core/types.ts';
import type { ChannelAdapter } from './channel.ts';
import { createTwilioSms } from './twilio-sms.ts';
import { createMessenger } from './meta-messenger.ts';
import { createWhatsApp } from './whatsapp.ts';
import type { MetaConfig, TwilioConfig } from '../config.ts';

export interface AdapterSettings {
  publicBaseUrl: string;
  sendTimeoutMs: number;
  twilio: TwilioConfig;
  meta?: MetaConfig;
  /** The clock Meta's messaging windows are measured with; injectable so tests can let a window close. */
  now?: () => Date;
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
  return adapters;
}
