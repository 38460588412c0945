import type { Channel, ChannelEvent, OutboundMessage } from '../core/types.ts';

/** What an adapter sees of a webhook: enough to check a signature over the exact bytes and URL. */
export interface WebhookRequest {
  /** The URL the provider called, as the provider saw it: our PUBLIC_BASE_URL + path + query. */
  publicUrl: string;
  headers: Record<string, string | string[] | undefined>;
  rawBody: Buffer;
}

export interface SendOptions {
  outboxId: string;
  signal: AbortSignal;
}

/**
 * What the outbox can learn about a send whose outcome is unknown. `conclusive`: findSent lists what the provider
 * accepted, so a miss means "not sent" and a resend is safe. `idempotent`: a resend of the same outbox row returns
 * the first send, so resending is safe without a lookup. `none`: the provider can neither be asked nor deduplicate,
 * so a resend might reach the patient twice; the outbox holds the row as `uncertain` for a coordinator to decide.
 */
export type SentLookup = 'conclusive' | 'idempotent' | 'none';

export interface ChannelAdapter {
  readonly channel: Channel;
  readonly provider: string;
  readonly lookup: SentLookup;
  /** Sends once. Throws ProviderError with `retryable`; never retries itself (the outbox does). */
  send(message: OutboundMessage, options: SendOptions): Promise<{ providerMessageId: string }>;
  /**
   * For an attempt whose outcome is unknown (crash, timeout, 5xx, dropped connection): the provider ids of
   * sends that match `message` and were created at or after `since`, oldest first. The outbox takes the
   * first one not already recorded against another message.
   */
  findSent(message: OutboundMessage, options: { since: Date; signal: AbortSignal }): Promise<string[]>;
  /** Checks the signature first (throws ForbiddenError); returns [] for events we deliberately ignore. */
  parseWebhook(request: WebhookRequest): ChannelEvent[];
}
