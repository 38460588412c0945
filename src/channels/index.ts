import type { Channel } from '../core/types.ts';
import type { ChannelAdapter } from './channel.ts';
import { createTwilioSms } from './twilio-sms.ts';
import type { TwilioConfig } from '../config.ts';

export interface AdapterSettings {
  publicBaseUrl: string;
  sendTimeoutMs: number;
  twilio: TwilioConfig;
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
  return adapters;
}
