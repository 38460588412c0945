import type { FastifyInstance } from 'fastify';
import { applyDeliveryStatus } from '../db/messages.ts';
import { recordInbound } from '../db/patients.ts';
import { BadRequestError } from '../errors.ts';
import type { AppDeps } from './server.ts';

/**
 * Telnyx messaging webhooks: one URL for inbound messages and delivery events (Telnyx sends both to the
 * message's `webhook_url` or the messaging profile's). Registered only when SMS_PROVIDER=telnyx. 200 only after
 * the commit; a failure of ours is a 5xx, which Telnyx retries.
 */
export async function registerTelnyxWebhookRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const sms = deps.adapters.get('sms');
  if (!sms || sms.provider !== 'telnyx') return;

  await app.register(async (scope) => {
    // The signature covers the exact bytes: JSON reaches the adapter unparsed, in this scope only.
    scope.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

    scope.post('/webhooks/telnyx/sms', async (request, reply) => {
      if (!Buffer.isBuffer(request.body)) throw new BadRequestError('invalid_webhook', 'expected an application/json body');
      const events = sms.parseWebhook({ publicUrl: deps.publicBaseUrl + request.url, headers: request.headers, rawBody: request.body });
      if (events.length === 0) request.log.info('signed Telnyx event of a kind we ignore');
      for (const event of events) {
        if (event.kind === 'inbound') {
          const result = await recordInbound(deps.db, event);
          request.log.info({ patientId: result.patientId, messageId: result.messageId, duplicate: result.duplicate }, 'inbound sms');
        } else {
          const outcome = await applyDeliveryStatus(deps.db, event);
          request.log.info({ providerMessageId: event.providerMessageId, status: event.status, outcome }, 'delivery status');
        }
      }
      return reply.send({});
    });
  });
}
