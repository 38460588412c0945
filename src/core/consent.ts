import type { Channel } from './types.ts';

export type ConsentChange = 'opt_out' | 'opt_in' | 'help';

// The CTIA / carrier keyword set Twilio honours by default (../shared/reference/providers.md §4).
const KEYWORDS: Record<string, ConsentChange> = {
  STOP: 'opt_out',
  STOPALL: 'opt_out',
  UNSUBSCRIBE: 'opt_out',
  END: 'opt_out',
  QUIT: 'opt_out',
  REVOKE: 'opt_out',
  OPTOUT: 'opt_out',
  CANCEL: 'opt_out',
  START: 'opt_in',
  UNSTOP: 'opt_in',
  YES: 'opt_in',
  HELP: 'help',
};

/** Channels a patient types on; a keyword means nothing in a call. */
export const KEYWORD_CHANNELS: ReadonlySet<Channel> = new Set(['sms', 'whatsapp', 'messenger', 'webchat', 'email']);

/**
 * The consent keyword a message is, if any. As carriers do, only a message that is the keyword alone counts
 * ("Stop." and " stop " do; "please stop calling me" does not), case-insensitively.
 */
export function parseConsentKeyword(channel: Channel, body: string): { change: ConsentChange; keyword: string } | null {
  if (!KEYWORD_CHANNELS.has(channel)) return null;
  const match = /^\s*([a-z]+)[\s.!]*$/i.exec(body);
  const keyword = match?.[1]?.toUpperCase();
  const change = keyword ? KEYWORDS[keyword] : undefined;
  return change && keyword ? { change, keyword } : null;
}
