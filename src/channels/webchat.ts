import type { Db } from '../db/db.ts';
import { findOutboxMessage, pushToWebchatStream } from '../db/webchat.ts';
import { BadRequestError, ProviderError } from '../errors.ts';
import type { ChannelAdapter } from './channel.ts';

export const WEBCHAT_PROVIDER = 'webchat';

/**
 * Web chat, where the provider is us: "sending" a reply appends it to the patient's chat stream (a table plus a
 * NOTIFY that wakes every web process holding one of the patient's pages), and the page's receipt later moves it
 * to `delivered`/`read` through the ordinary status path. The provider message id is our message id.
 *
 * Exactly once, for real: the stream holds a message at most once (UNIQUE message_id), so a resend after an
 * unknown outcome (crash, timeout) returns the first push instead of showing the reply twice.
 */
export function createWebchatChannel(deps: { db: Db }): ChannelAdapter {
  return {
    channel: 'webchat',
    provider: WEBCHAT_PROVIDER,
    lookup: 'idempotent',

    async send(_message, { outboxId }) {
      try {
        const row = await findOutboxMessage(deps.db, outboxId);
        if (!row) throw new ProviderError(`outbox row ${outboxId} not found`, { retryable: false, outcome: 'not-sent', code: 'unknown_outbox' });
        await pushToWebchatStream(deps.db, row.patientId, row.messageId);
        return { providerMessageId: row.messageId };
      } catch (error) {
        if (error instanceof ProviderError) throw error;
        // Our own database failed: the push may or may not have committed; resending is harmless (see above).
        throw new ProviderError(error instanceof Error ? error.message : String(error), { retryable: true, outcome: 'not-sent', code: 'storage' }, { cause: error });
      }
    },

    // send() is idempotent per message, so there is never anything to look up: resending finds the first push.
    async findSent() {
      return [];
    },

    parseWebhook() {
      throw new BadRequestError('not_a_webhook_channel', 'web chat messages arrive through /chat/api, not a provider webhook');
    },
  };
}
