import { describe, expect, it } from 'vitest';
import { canonicalInboundAddress, normalizeAddress } from './address.ts';

describe('address normalisation', () => {
  it.each(['+15551234567', '(555) 123-4567', '555.123.4567', '1 555 123 4567', '15551234567', 'whatsapp:+15551234567'])('%s → +15551234567', (input) => {
    expect(normalizeAddress('sms', input)).toBe('+15551234567');
    expect(normalizeAddress('whatsapp', input)).toBe('+15551234567');
  });
  it('keeps other countries in E.164 and leaves non-phone addresses alone', () => {
    expect(normalizeAddress('sms', '+44 20 7946 0958')).toBe('+442079460958');
    expect(normalizeAddress('messenger', ' 24816030402948 ')).toBe('24816030402948');
  });
  it('refuses what cannot be a phone number', () => {
    expect(() => normalizeAddress('sms', '12')).toThrow(expect.objectContaining({ code: 'invalid_address', status: 400 }));
  });
  it('keeps a webhook sender that is no phone number (short code, sender id) as sent', () => {
    expect(canonicalInboundAddress('sms', ' 72345 ')).toBe('72345');
    expect(canonicalInboundAddress('sms', '(555) 123-4567')).toBe('+15551234567');
  });
});
