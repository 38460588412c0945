import { parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js';
import type { Channel } from './types.ts';

/** Channels whose address is a phone number, stored in E.164 so one number in two spellings is one identity. */
export const PHONE_CHANNELS: ReadonlySet<Channel> = new Set(['sms', 'whatsapp', 'voice']);

export type NormalisedAddress = { ok: true; address: string } | { ok: false; reason: string };

/**
 * The canonical form of an address on a channel. Phone numbers become E.164 (`(555) 123-4567` with default
 * country US → `+15551234567`). We accept any *possible* number (right length for its country) rather than
 * only *valid* ones: validity tables lag behind number allocations, and test ranges such as 555 are not "valid".
 * Other channels' addresses (PSIDs, email addresses, web-chat ids) are only trimmed; email is lower-cased.
 */
export function normaliseAddress(channel: Channel, raw: string, defaultCountry: CountryCode = 'US'): NormalisedAddress {
  const input = raw.trim();
  if (input === '') return { ok: false, reason: 'address is empty' };
  if (PHONE_CHANNELS.has(channel)) {
    // Twilio prefixes WhatsApp and voice addresses ("whatsapp:+1…"); the identity is the number.
    const phone = parsePhoneNumberFromString(input.replace(/^(whatsapp|tel|sms):/i, ''), defaultCountry);
    if (!phone || !phone.isPossible()) return { ok: false, reason: `${input} is not a phone number` };
    return { ok: true, address: phone.number };
  }
  if (channel === 'email') return { ok: true, address: input.toLowerCase() };
  return { ok: true, address: input };
}
