import type { CountryCode } from 'libphonenumber-js';
import { normaliseAddress } from '../core/address.ts';
import type { Channel } from '../core/types.ts';
import { BadRequestError } from '../errors.ts';

/**
 * The canonical form of an address entering through the API (`normaliseAddress` in the core: E.164 for phone
 * channels, lower-cased email, trimmed otherwise).
 * @throws BadRequestError `invalid_address` when a phone channel's address is not a possible number.
 */
export function normalizeAddress(channel: Channel, address: string, defaultCountry: CountryCode = 'US'): string {
  const result = normaliseAddress(channel, address, defaultCountry);
  if (!result.ok) throw new BadRequestError('invalid_address', `${channel} address: ${result.reason}`);
  return result.address;
}

/**
 * For webhooks: the provider already authenticated the sender, so an address that is not a possible phone
 * number (a short code, an alphanumeric sender id) is kept as sent rather than refused and lost.
 */
export function canonicalInboundAddress(channel: Channel, address: string, defaultCountry: CountryCode = 'US'): string {
  const result = normaliseAddress(channel, address, defaultCountry);
  return result.ok ? result.address : address.trim();
}
