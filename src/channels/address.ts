import { parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js';
import type { Channel } from '../core/types.ts';
import { BadRequestError } from '../errors.ts';

/** Channels whose address is a phone number: one number in two spellings must be one identity. */
export const PHONE_CHANNELS: ReadonlySet<Channel> = new Set(['sms', 'whatsapp', 'voice']);

/**
 * The canonical form of an address as it enters (webhook or API): E.164 for phone channels, trimmed otherwise.
 * `isPossible`, not `isValid`: validity depends on numbering-plan metadata that lags real allocations (and
 * rejects the 555 test numbers), while possibility is enough to canonicalise.
 * @throws BadRequestError `invalid_address` when a phone channel's address is not a possible number.
 */
export function normalizeAddress(channel: Channel, address: string, defaultCountry: CountryCode = 'US'): string {
  const trimmed = address.trim();
  if (!PHONE_CHANNELS.has(channel)) return trimmed;
  // Twilio may prefix WhatsApp-style addresses ("whatsapp:+1…"); the identity is the number.
  const bare = trimmed.replace(/^(whatsapp|tel|sms):/i, '');
  const parsed = parsePhoneNumberFromString(bare, defaultCountry);
  if (!parsed || !parsed.isPossible()) throw new BadRequestError('invalid_address', `${channel} address is not a possible phone number`);
  return parsed.number;
}

/**
 * For webhooks: the provider already authenticated the sender, so an address that is not a possible phone
 * number (a short code, an alphanumeric sender id) is kept as sent rather than refused and lost.
 */
export function canonicalInboundAddress(channel: Channel, address: string, defaultCountry: CountryCode = 'US'): string {
  try {
    return normalizeAddress(channel, address, defaultCountry);
  } catch {
    return address.trim();
  }
}
