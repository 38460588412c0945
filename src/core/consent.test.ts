import { describe, expect, it } from 'vitest';
import { parseConsentKeyword } from './consent.ts';

describe('consent keywords', () => {
  it.each([
    ['STOP', 'opt_out'],
    ['stop', 'opt_out'],
    [' Stop. ', 'opt_out'],
    ['UNSUBSCRIBE', 'opt_out'],
    ['end', 'opt_out'],
    ['QUIT', 'opt_out'],
    ['STOPALL', 'opt_out'],
    ['REVOKE', 'opt_out'],
    ['OPTOUT', 'opt_out'],
    ['Cancel!', 'opt_out'],
    ['START', 'opt_in'],
    ['unstop', 'opt_in'],
    ['Yes', 'opt_in'],
    ['HELP', 'help'],
  ] as const)('%j → %s', (body, change) => {
    expect(parseConsentKeyword('sms', body)?.change).toBe(change);
  });

  it.each(['please stop', 'stop it', 'STOP STOP', 'yes please', '', 'stopp'])('%j is not a keyword', (body) => {
    expect(parseConsentKeyword('sms', body)).toBeNull();
  });

  it('applies on every text channel, not to calls', () => {
    expect(parseConsentKeyword('whatsapp', 'STOP')?.change).toBe('opt_out');
    expect(parseConsentKeyword('messenger', 'STOP')?.change).toBe('opt_out');
    expect(parseConsentKeyword('voice', 'STOP')).toBeNull();
  });
});
