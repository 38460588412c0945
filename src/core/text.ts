/**
 * Text every channel hands us is stored in PostgreSQL, which refuses two things a JavaScript string can hold: NUL
 * (U+0000, in `text` and `jsonb`) and lone UTF-16 surrogates (not encodable as UTF-8; `jsonb` rejects the escape).
 * One of them in an SMS made every provider retry a 500, so the message was never stored. They carry no meaning
 * a person could have typed, so they are removed, and the count is kept beside the message.
 */
import type { DeliveryStatus, InboundMessage } from './types.ts';

// NUL; a high surrogate not followed by a low one; a low surrogate not preceded by a high one.
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

export interface StorableText {
  text: string;
  /** How many UTF-16 code units were removed. */
  removed: number;
}

export function storableText(text: string): StorableText {
  const cleaned = text.replace(UNSTORABLE, '');
  return { text: cleaned, removed: text.length - cleaned.length };
}

/** An inbound message with every stored string made storable, and how many characters that removed in all. */
export function storableInbound(event: InboundMessage): { event: InboundMessage; removed: number } {
  let removed = 0;
  const clean = (value: string): string => {
    const result = storableText(value);
    removed += result.removed;
    return result.text;
  };
  const cleaned: InboundMessage = {
    ...event,
    provider: clean(event.provider),
    providerMessageId: clean(event.providerMessageId),
    from: clean(event.from),
    to: clean(event.to),
    body: clean(event.body),
    media: event.media.map((m) => ({ ...m, url: clean(m.url), ...(m.contentType === undefined ? {} : { contentType: clean(m.contentType) }) })),
  };
  return { event: cleaned, removed };
}

export function storableStatus(event: DeliveryStatus): DeliveryStatus {
  const clean = (value: string) => storableText(value).text;
  return {
    ...event,
    providerMessageId: clean(event.providerMessageId),
    ...(event.errorCode === undefined ? {} : { errorCode: clean(event.errorCode) }),
    ...(event.errorMessage === undefined ? {} : { errorMessage: clean(event.errorMessage) }),
  };
}
