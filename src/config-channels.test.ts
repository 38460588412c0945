import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from './config.ts';

describe('web chat and email configuration', () => {
  it('defaults: inbound SMTP on loopback 2525, no outbound email, no link secret', () => {
    const config = parseConfig({});
    expect(config.smtpListen).toEqual({ host: '127.0.0.1', port: 2525 });
    expect(config.email).toBeUndefined();
    expect(config.webchat).toEqual({ linkSecret: undefined, linkTtlMs: 24 * 3_600_000 });
  });

  it('reads outbound SMTP and turns the listener off', () => {
    const config = parseConfig({ SMTP_HOST: 'smtp.example.org', SMTP_PORT: '465', SMTP_SECURE: 'true', SMTP_USER: 'u', SMTP_PASS: 'p', SMTP_FROM: 'Care <care@example.org>', SMTP_LISTEN_PORT: 'off' });
    expect(config.smtpListen).toBeNull();
    expect(config.email).toEqual({ host: 'smtp.example.org', port: 465, secure: true, user: 'u', pass: 'p', from: 'Care <care@example.org>', defaultSubject: 'A message from your care team' });
  });

  it('lists every problem at once', () => {
    let error: unknown;
    try {
      parseConfig({ SMTP_HOST: 'smtp.example.org', WEBCHAT_LINK_SECRET: 'short', SMTP_LISTEN_PORT: 'nope' });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join('\n');
    expect(problems).toMatch(/WEBCHAT_LINK_SECRET/);
    expect(problems).toMatch(/SMTP_LISTEN_PORT/);
  });

  it('requires SMTP_FROM with SMTP_HOST', () => {
    expect(() => parseConfig({ SMTP_HOST: 'smtp.example.org' })).toThrow(/SMTP_FROM/);
  });

  it('sends alert email through the same SMTP settings: the old SMTP_URL is refused with the way forward', () => {
    expect(() => parseConfig({ SMTP_URL: 'smtp://mail.example.org:587' })).toThrow(/SMTP_URL.*SMTP_HOST/);
    const config = parseConfig({ SMTP_HOST: 'smtp.example.org', SMTP_FROM: 'care@example.org', ALERT_EMAIL_FROM: 'alerts@example.org' });
    expect(config.ops.alertEmailFrom).toBe('alerts@example.org');
  });
});
