import { describe, expect, it } from 'vitest';
import { normaliseAddress } from './address.ts';

describe('normaliseAddress', () => {
  it('makes one number in several spellings one E.164 address', () => {
    for (const spelling of ['+1 (555) 123-4567', '(555) 123-4567', '555.123.4567', '+15551234567', ' 1-555-123-4567 ']) {
      expect(normaliseAddress('sms', spelling)).toEqual({ ok: true, address: '+15551234567' });
    }
  });

  it('reads national numbers in the default country', () => {
    expect(normaliseAddress('whatsapp', '020 7946 0018', 'GB')).toEqual({ ok: true, address: '+442079460018' });
  });

  it('refuses what cannot be a phone number', () => {
    expect(normaliseAddress('sms', '12').ok).toBe(false);
    expect(normaliseAddress('sms', 'call me').ok).toBe(false);
    expect(normaliseAddress('sms', '   ').ok).toBe(false);
  });

  it('leaves non-phone addresses alone but trimmed, email lower-cased', () => {
    expect(normaliseAddress('messenger', ' 24853125 ')).toEqual({ ok: true, address: '24853125' });
    expect(normaliseAddress('email', ' Pat@Example.ORG ')).toEqual({ ok: true, address: 'pat@example.org' });
  });
});
