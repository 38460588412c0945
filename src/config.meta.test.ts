import { describe, expect, it } from 'vitest';
import { ConfigError, DEFAULT_HELP_REPLY, parseConfig } from './config.ts';

describe('Messenger, WhatsApp and consent configuration', () => {
  it('is off by default, with the default HELP reply', () => {
    const config = parseConfig({});
    expect(config.meta).toBeUndefined();
    expect(config.helpReply).toBe(DEFAULT_HELP_REPLY);
  });

  it('reads Messenger and WhatsApp with their shared app secret, verify token and template', () => {
    const config = parseConfig({
      META_APP_SECRET: 's',
      META_VERIFY_TOKEN: 'v',
      META_GRAPH_BASE: 'http://127.0.0.1:9999',
      MESSENGER_PAGE_ID: '1050',
      MESSENGER_PAGE_ACCESS_TOKEN: 'EAAp',
      WHATSAPP_PHONE_NUMBER_ID: '1065',
      WHATSAPP_ACCESS_TOKEN: 'EAAw',
      WHATSAPP_TEMPLATE_NAME: 'care_team_followup',
      HELP_REPLY: 'Call us.',
    });
    expect(config.meta).toEqual({
      appSecret: 's',
      verifyToken: 'v',
      graphApiBase: 'http://127.0.0.1:9999',
      messenger: { pageId: '1050', pageAccessToken: 'EAAp' },
      whatsapp: { phoneNumberId: '1065', accessToken: 'EAAw', template: { name: 'care_team_followup', languageCode: 'en_US' } },
    });
    expect(config.helpReply).toBe('Call us.');
  });

  it('lists every missing half at once', () => {
    let error: unknown;
    try {
      parseConfig({ MESSENGER_PAGE_ID: '1050', WHATSAPP_ACCESS_TOKEN: 'EAAw' });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join('\n');
    expect(problems).toContain('MESSENGER_PAGE_ACCESS_TOKEN');
    expect(problems).toContain('WHATSAPP_PHONE_NUMBER_ID');
    expect(problems).toContain('META_APP_SECRET');
  });
});
