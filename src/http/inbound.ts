import type { FastifyBaseLogger } from 'fastify';
import { canonicalInboundAddress } from '../channels/address.ts';
import type { ChannelEvent, InboundMessage } from '../core/types.ts';
import { storableStatus, storableText } from '../core/text.ts';
import { applyInboundConsent } from '../db/consent.ts';
import { applyDeliveryStatus } from '../db/messages.ts';
import { recordInbound } from '../db/patients.ts';
import type { AppDeps } from './server.ts';
import { DEFAULT_HELP_REPLY } from '../config.ts';


/**
 * Every channel's webhook route ends here once the adapter has verified and parsed the request: phone addresses
 * are canonicalised to E.164 (one number in two spellings is one identity), a batch's messages are stored in
 * the order the provider stamped them, each exactly once, and consent keywords are applied. Statuses move
 * forward only. Each event commits on its own; the caller answers 200 only after all of them, so a failure is a
 * 5xx and the provider redelivers the batch (stored events are then duplicates).
 */
export async function acceptEvents(deps: AppDeps, log: FastifyBaseLogger, events: readonly ChannelEvent[], options: { quietWhenEmpty?: boolean; elapsedSeconds?: () => number } = {}): Promise<void> {
  if (events.length === 0) {
    if (options.quietWhenEmpty) return;
    log.info('signed webhook event of a kind we ignore');
    return;
  }
  const inbound = events
    .filter((e): e is InboundMessage => e.kind === 'inbound')
    .map((e) => ({ ...e, from: canonicalInboundAddress(e.channel, e.from) }))
    .map((e, index) => ({ e, index }))
    // Providers may batch out of order; a stable sort keeps delivery order where they carry no timestamp.
    .sort((a, b) => (a.e.receivedAt?.getTime() ?? 0) - (b.e.receivedAt?.getTime() ?? 0) || a.index - b.index)
    .map(({ e }) => e);
  for (const event of inbound) {
    const result = await recordInbound(deps.db, event, deps.metrics);
    if (options.elapsedSeconds) deps.metrics?.webhookToStored('inbound', options.elapsedSeconds());
    const consent = await applyInboundConsent(deps.db, { messageId: result.messageId, duplicate: result.duplicate, channel: event.channel, body: storableText(event.body).text, helpReply: deps.helpReply ?? DEFAULT_HELP_REPLY });
    log.info(
      { channel: event.channel, patientId: result.patientId, messageId: result.messageId, duplicate: result.duplicate, ...(consent.change ? { consent: consent.change, consentRecorded: consent.recorded } : {}) },
      'inbound message',
    );
  }
  for (const event of events) {
    if (event.kind !== 'status') continue;
    const outcome = await applyDeliveryStatus(deps.db, storableStatus(event));
    log.info({ channel: event.channel, providerMessageId: event.providerMessageId, status: event.status, outcome }, 'delivery status');
  }
}
