import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ChannelAdapter, WebhookRequest } from '../channels/channel.ts';
import { acceptEvents } from './inbound.ts';
import { applyDeliveryStatus } from '../db/messages.ts';
import { BadRequestError } from '../errors.ts';
import type { AppDeps } from './server.ts';

const EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>';

function toWebhookRequest(request: FastifyRequest, publicBaseUrl: string): WebhookRequest {
  if (!Buffer.isBuffer(request.body)) throw new BadRequestError('invalid_webhook', 'expected an application/x-www-form-urlencoded body');
  return { publicUrl: publicBaseUrl + request.url, headers: request.headers, rawBody: request.body };
}

export async function registerWebhookRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const sms = deps.adapters.get('sms');
  if (!sms) return;

  /**
   * Inbound SMS. 200 only after the commit: an error (DB down) becomes a 5xx and Twilio redelivers; a
   * redelivery of a stored MessageSid is answered 200 again and stored once.
   */
  app.post('/webhooks/twilio/sms', async (request, reply) => {
    const events = parseEvents(sms, request, deps.publicBaseUrl);
    await acceptEvents(deps, request.log, events.filter((event) => event.kind === 'inbound'));
    return reply.type('text/xml').send(EMPTY_TWIML);
  });

  app.post('/webhooks/twilio/status', async (request, reply) => {
    const events = parseEvents(sms, request, deps.publicBaseUrl);
    for (const event of events) {
      if (event.kind !== 'status') continue;
      const outcome = await applyDeliveryStatus(deps.db, event);
      request.log.info({ providerMessageId: event.providerMessageId, status: event.status, outcome }, 'delivery status');
    }
    return reply.type('text/xml').send(EMPTY_TWIML);
  });
}

function parseEvents(adapter: ChannelAdapter, request: FastifyRequest, publicBaseUrl: string) {
  const events = adapter.parseWebhook(toWebhookRequest(request, publicBaseUrl));
  if (events.length === 0) request.log.info('signed webhook event of a kind we ignore');
  return events;
}
