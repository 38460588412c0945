import type { FastifyInstance } from 'fastify';
import { BadRequestError } from '../errors.ts';
import { acceptEvents } from './inbound.ts';
import type { AppDeps } from './server.ts';
import { policy } from './policy.ts';

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

    scope.post('/webhooks/telnyx/sms', policy({ auth: 'webhook', signature: 'telnyx' }), async (request, reply) => {
      if (!Buffer.isBuffer(request.body)) throw new BadRequestError('invalid_webhook', 'expected an application/json body');
      const events = sms.parseWebhook({ publicUrl: deps.publicBaseUrl + request.url, headers: request.headers, rawBody: request.body });
      // The same path as every channel: canonical addresses, batch order, exactly-once storage, consent keywords.
      await acceptEvents(deps, request.log, events);
      return reply.send({});
    });
  });
}
