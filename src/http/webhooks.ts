import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ChannelAdapter, WebhookRequest } from '../channels/channel.ts';
import { acceptEvents } from './inbound.ts';
import { applyDeliveryStatus } from '../db/messages.ts';
import { BadRequestError, ForbiddenError } from '../errors.ts';
import { acceptedAt } from '../ops/delivery-latency.ts';
import type { AppDeps } from './server.ts';
import { policy } from './policy.ts';

const EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>';

function toWebhookRequest(request: FastifyRequest, publicBaseUrl: string): WebhookRequest {
  if (!Buffer.isBuffer(request.body)) throw new BadRequestError('invalid_webhook', 'expected an application/x-www-form-urlencoded body');
  return { publicUrl: publicBaseUrl + request.url, headers: request.headers, rawBody: request.body };
}

export async function registerWebhookRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const sms = deps.adapters.get('sms');
  if (!sms || sms.provider !== 'twilio') return;

  /**
   * Inbound SMS. 200 only after the commit: an error (DB down) becomes a 5xx and Twilio redelivers; a
   * redelivery of a stored MessageSid is answered 200 again and stored once.
   */
  app.post('/webhooks/twilio/sms', policy({ auth: 'webhook', signature: 'twilio' }), async (request, reply) => {
    const events = parseEvents(sms, request, deps);
    // elapsedTime runs from the moment Fastify received the request.
    await acceptEvents(deps, request.log, events.filter((event) => event.kind === 'inbound'), { quietWhenEmpty: true, elapsedSeconds: () => reply.elapsedTime / 1000 });
    return reply.type('text/xml').send(EMPTY_TWIML);
  });

  app.post('/webhooks/twilio/status', policy({ auth: 'webhook', signature: 'twilio' }), async (request, reply) => {
    const events = parseEvents(sms, request, deps);
    for (const event of events) {
      if (event.kind !== 'status') continue;
      const outcome = await applyDeliveryStatus(deps.db, event);
      if (deps.metrics) {
        const metrics = deps.metrics;
        metrics.webhookToStored('status', reply.elapsedTime / 1000);
        if (outcome === 'duplicate') metrics.duplicateDropped('status');
        if (outcome === 'applied' && ['delivered', 'undelivered', 'failed'].includes(event.status)) metrics.outboundFinal(event.status);
        if (outcome === 'applied' && event.status === 'delivered') {
          const accepted = await acceptedAt(deps.db, event.provider, event.providerMessageId);
          if (accepted) metrics.providerAcceptedToDelivered(Math.max(0, Date.now() - accepted.getTime()) / 1000);
        }
      }
      request.log.info({ providerMessageId: event.providerMessageId, status: event.status, outcome }, 'delivery status');
    }
    return reply.type('text/xml').send(EMPTY_TWIML);
  });
}

function parseEvents(adapter: ChannelAdapter, request: FastifyRequest, deps: AppDeps) {
  let events;
  try {
    events = adapter.parseWebhook(toWebhookRequest(request, deps.publicBaseUrl));
  } catch (error) {
    if (error instanceof ForbiddenError) deps.metrics?.webhookSignatureFailure(adapter.provider);
    throw error;
  }
  if (events.length === 0) request.log.info('signed webhook event of a kind we ignore');
  return events;
}
