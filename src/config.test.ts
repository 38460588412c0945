import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from './config.ts';

const KEY = Buffer.alloc(32, 7).toString('base64');

const problems = (env: Record<string, string>) => {
  try {
    parseConfig(env);
    return [];
  } catch (error) {
    return error instanceof ConfigError ? error.problems : [String(error)];
  }
};

describe('SMS_PROVIDER and identity settings', () => {
  it('defaults to Twilio (demo mode without credentials) and US phone numbers', () => {
    const config = parseConfig({});
    expect(config).toMatchObject({ smsProvider: 'twilio', demo: true, defaultPhoneCountry: 'US' });
    expect(config.telnyx).toBeUndefined();
  });

  it('builds the Telnyx settings, and is not demo mode', () => {
    const config = parseConfig({ SMS_PROVIDER: 'telnyx', TELNYX_API_KEY: 'KEY123', TELNYX_PUBLIC_KEY: KEY, TELNYX_FROM_NUMBER: '+15005550006', DEFAULT_PHONE_COUNTRY: 'GB' });
    expect(config).toMatchObject({ smsProvider: 'telnyx', demo: false, defaultPhoneCountry: 'GB', telnyx: { apiKey: 'KEY123', publicKey: KEY, fromNumber: '+15005550006' } });
  });

  it('lists every missing or malformed Telnyx setting at once', () => {
    expect(problems({ SMS_PROVIDER: 'telnyx' })).toEqual([
      'TELNYX_API_KEY: SMS_PROVIDER=telnyx needs TELNYX_API_KEY (demo mode runs the Twilio fake)',
      'TELNYX_PUBLIC_KEY: SMS_PROVIDER=telnyx needs TELNYX_PUBLIC_KEY (demo mode runs the Twilio fake)',
      'TELNYX_FROM_NUMBER: set TELNYX_FROM_NUMBER or TELNYX_MESSAGING_PROFILE_ID',
    ]);
    const bad = problems({ SMS_PROVIDER: 'vonage', TELNYX_PUBLIC_KEY: Buffer.alloc(16).toString('base64'), DEFAULT_PHONE_COUNTRY: 'usa' });
    expect(bad.map((p) => p.split(':')[0]).sort()).toEqual(['DEFAULT_PHONE_COUNTRY', 'SMS_PROVIDER', 'TELNYX_PUBLIC_KEY']);
  });
});
