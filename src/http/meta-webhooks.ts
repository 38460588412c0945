import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ChannelAdapter, WebhookRequest } from '../channels/channel.ts';
import type { SubscriptionVerifier } from '../channels/meta-signature.ts';
import type { WatermarkParser } from '../channels/meta-messenger.ts';
import { applyWatermark } from '../db/watermarks.ts';
import { BadRequestError, ForbiddenError } from '../errors.ts';
import { acceptEvents } from './inbound.ts';
import type { AppDeps } from './server.ts';
import { policy } from './policy.ts';

const canVerify = (adapter: ChannelAdapter): adapter is ChannelAdapter & SubscriptionVerifier => 'verifySubscription' in adapter;
const hasWatermarks = (adapter: ChannelAdapter): adapter is ChannelAdapter & WatermarkParser => 'parseWatermarks' in adapter;

/**
 * Messenger and WhatsApp Cloud webhooks (../shared/reference/providers.md §6–§7): the GET subscription handshake
 * and signed POSTs. Registered in their own encapsulated context so that only here is application/json kept as
 * raw bytes (X-Hub-Signature-256 covers the exact bytes); the coordinator API keeps Fastify's JSON parser.
 */
export async function registerMetaWebhookRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const routes = (['messenger', 'whatsapp'] as const).flatMap((channel) => {
    const adapter = deps.adapters.get(channel);
    return adapter ? [{ channel, adapter }] : [];
  });
  if (routes.length === 0) return;

  await app.register(async (scoped) => {
    scoped.removeContentTypeParser('application/json');
    scoped.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

    for (const { channel, adapter } of routes) {
      const path = `/webhooks/${channel}`;

      scoped.get(path, policy({ auth: 'webhook', signature: 'meta' }), async (request, reply) => {
        const challenge = canVerify(adapter) ? adapter.verifySubscription(request.query as Record<string, unknown>) : null;
        if (challenge === null) throw new ForbiddenError('verify_token_mismatch', 'hub.verify_token does not match');
        return reply.type('text/plain').send(challenge);
      });

      /** 200 only after every event committed; Meta redelivers anything else, and stored events dedupe by mid / wamid. */
      scoped.post(path, policy({ auth: 'webhook', signature: 'meta' }), async (request, reply) => {
        const webhook = toWebhookRequest(request, deps.publicBaseUrl);
        const events = adapter.parseWebhook(webhook);
        const watermarks = hasWatermarks(adapter) ? adapter.parseWatermarks(webhook) : [];
        await acceptEvents(deps, request.log, events, { quietWhenEmpty: watermarks.length > 0 });
        for (const mark of watermarks) {
          const applied = await applyWatermark(deps.db, { channel, provider: adapter.provider, ...mark });
          request.log.info({ channel, status: mark.status, applied }, 'delivery watermark');
        }
        return reply.send({ ok: true });
      });
    }
  });
}

function toWebhookRequest(request: FastifyRequest, publicBaseUrl: string): WebhookRequest {
  if (!Buffer.isBuffer(request.body)) throw new BadRequestError('invalid_webhook', 'expected an application/json body');
  return { publicUrl: publicBaseUrl + request.url, headers: request.headers, rawBody: request.body };
}
