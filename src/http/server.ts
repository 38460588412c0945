import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { ZodType } from 'zod';
import type { CountryCode } from 'libphonenumber-js';
import type { ChannelAdapter } from '../channels/channel.ts';
import type { Channel } from '../core/types.ts';
import type { Db } from '../db/db.ts';
import { AppError, BadRequestError, isStorageUnavailable } from '../errors.ts';
import { registerApiRoutes } from './api.ts';
import { registerInboxRoutes } from './inbox-api.ts';
import { registerRoutingRoutes } from './routing-api.ts';
import { registerWebhookRoutes } from './webhooks.ts';
import { registerMetaWebhookRoutes } from './meta-webhooks.ts';
import { registerConsentRoutes } from './consent-api.ts';
import type { ReplyRules } from '../core/reply-channel.ts';
import { registerIdentityRoutes } from './identity-api.ts';
import { registerTelnyxWebhookRoutes } from './telnyx-webhooks.ts';
import { registerWebchatRoutes, type WebchatSettings } from './webchat-api.ts';
import { registerVoiceWebhookRoutes } from './voice-webhooks.ts';
import { registerCallsApiRoutes } from './calls-api.ts';
import { registerVisitRoutes } from './visits.ts';
import type { CallSettings } from '../calls/settings.ts';
import { registerOpsRoutes } from './ops-api.ts';
import type { ConnectionLimits } from './connection-limits.ts';
import { installPolicy, type RegisteredRoute } from './policy.ts';
import type { OpsMetrics } from '../ops/metrics.ts';

export interface AppDeps {
  db: Db;
  logger: Logger;
  adapters: ReadonlyMap<Channel, ChannelAdapter>;
  /** The base URL providers call us on; webhook signatures are checked against it. */
  publicBaseUrl: string;
  tokenTtlMs: number;
  /** Browser sessions expire after this long without a request (and at tokenTtlMs after sign-in regardless). */
  sessionIdleMs?: number;
  /** IPs/CIDRs of reverse proxies whose X-Forwarded-For is believed (config TRUSTED_PROXIES); unset: none. */
  trustedProxies?: string[];
  /** How often open live streams get a keep-alive and have their credential re-checked; default 15 s. */
  liveHeartbeatMs?: number;
  /** Webhook and API bodies above this are refused with 413 before parsing. */
  bodyLimitBytes?: number;
  /** Clock and template channels for choosing a reply's channel (windows, fallback); unset = no window checks. */
  replyRules?: ReplyRules;
  /** The automatic answer to HELP (config HELP_REPLY). */
  helpReply?: string;
  /** ISO country for reading national phone numbers when linking identities (DEFAULT_PHONE_COUNTRY); default US. */
  defaultPhoneCountry?: CountryCode;
  /** Web chat (page, link API, stream); absent means web chat is off. */
  webchat?: WebchatSettings;
  /** Twilio Voice and recordings; unset = no voice routes (the search API is registered either way). */
  calls?: CallSettings;
  /** How long a client may take to send a request (HTTP_*_TIMEOUT_MS); see HTTP_TIMEOUT_DEFAULTS. */
  httpTimeouts?: Partial<HttpTimeouts>;
  /** Caps on open SSE streams and visit WebSockets, and the visit hello deadline; see CONNECTION_LIMIT_DEFAULTS. */
  connectionLimits?: Partial<ConnectionLimits>;
  /** ALERT_TARGETS_ALLOW_PRIVATE: alert rules may name loopback and private target addresses. */
  alertTargetsAllowPrivate?: boolean;
  /** Counters and histograms of this process, and GET /metrics (src/ops/metrics.ts). */
  metrics?: OpsMetrics;
  /** GET /metrics needs `Authorization: Bearer <metricsToken>`; unset = /metrics is not served on this port. */
  metricsToken?: string;
  /** Sees every route as it is registered, with its policy (the route-table test collects them). */
  onRouteRegistered?: (route: RegisteredRoute) => void;
}

export interface HttpTimeouts {
  /** The whole request (headers and body) must arrive within this; a slow-body client is cut off (408). */
  requestMs: number;
  /** The headers must arrive within this. */
  headersMs: number;
  /** An idle keep-alive connection is closed after this. */
  keepAliveMs: number;
  /** How often Node checks the two above (its default, 30 s, would let a short timeout run long). */
  checkIntervalMs: number;
}

/** Fastify's default requestTimeout is 0: without these, a client sending one byte a minute holds a socket forever. */
export const HTTP_TIMEOUT_DEFAULTS: HttpTimeouts = { requestMs: 60_000, headersMs: 20_000, keepAliveMs: 5_000, checkIntervalMs: 5_000 };

export async function createApp(deps: AppDeps): Promise<FastifyInstance> {
  const timeouts = { ...HTTP_TIMEOUT_DEFAULTS, ...deps.httpTimeouts };
  const app = Fastify({
    requestTimeout: timeouts.requestMs,
    keepAliveTimeout: timeouts.keepAliveMs,
    http: {
      requestTimeout: timeouts.requestMs,
      headersTimeout: Math.min(timeouts.headersMs, timeouts.requestMs),
      connectionsCheckingInterval: timeouts.checkIntervalMs,
    },
    // pino's Logger is a FastifyBaseLogger; widening keeps route helpers typed against the plain FastifyInstance.
    loggerInstance: deps.logger as FastifyBaseLogger,
    bodyLimit: deps.bodyLimitBytes ?? 256 * 1024,
    // X-Forwarded-For is believed only from the configured proxies (proxy-addr walks it from the peer back, stopping
    // at the first untrusted hop), so `request.ip` (audit log, sign-in throttling) cannot be chosen by a client.
    trustProxy: deps.trustedProxies && deps.trustedProxies.length > 0 ? deps.trustedProxies : false,
  });

  // Webhook signatures cover the exact bytes, so forms reach handlers unparsed; each adapter parses after verifying.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

  app.setErrorHandler((error: FastifyError | AppError | Error, request, reply) => {
    if (error instanceof AppError) {
      return reply.status(error.status).send({ code: error.code, message: error.message, ...(error.details ? { details: error.details } : {}) });
    }
    const status = (error as FastifyError).statusCode;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      const code = status === 413 ? 'payload_too_large' : status === 415 ? 'unsupported_media_type' : 'bad_request';
      return reply.status(status).send({ code, message: error.message });
    }
    if (isStorageUnavailable(error)) {
      request.log.error({ err: error }, 'storage unavailable');
      // 503 + Retry-After: providers retry, so the message arrives once we are back.
      return reply.status(503).header('retry-after', '5').send({ code: 'storage_unavailable', message: 'storage is unavailable; retry later' });
    }
    request.log.error({ err: error }, 'unhandled error');
    return reply.status(500).send({ code: 'internal', message: 'internal error' });
  });

  app.setNotFoundHandler((request, reply) => reply.status(404).send({ code: 'not_found', message: `no route for ${request.method} ${request.url.split('?')[0]}` }));

  // Before any route: every route must declare who may call it, enforced on the route the router matched.
  installPolicy(app, { db: deps.db, sessionIdleMs: deps.sessionIdleMs, onRouteRegistered: deps.onRouteRegistered });

  // Patient information must not linger in browser or proxy caches: every API answer is no-store (unless a route
  // chose its own, e.g. recordings' `private, no-store`). Over https, browsers are told to never try http.
  const hsts = new URL(deps.publicBaseUrl).protocol === 'https:';
  app.addHook('onSend', async (request, reply) => {
    if (hsts) reply.header('strict-transport-security', 'max-age=31536000');
    if ((request.routeOptions.url ?? request.url).startsWith('/api/') && !reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
  });

  await registerWebhookRoutes(app, deps);
  await registerApiRoutes(app, deps);
  await registerInboxRoutes(app, deps);
  await registerRoutingRoutes(app, deps);
  await registerMetaWebhookRoutes(app, deps);
  await registerConsentRoutes(app, deps);
  await registerIdentityRoutes(app, deps);
  await registerTelnyxWebhookRoutes(app, deps);
  await registerWebchatRoutes(app, deps);
  await registerVoiceWebhookRoutes(app, deps);
  await registerCallsApiRoutes(app, deps);
  await registerVisitRoutes(app, deps);
  await registerOpsRoutes(app, deps);
  return app;
}

/** Validates input with a zod schema; every problem is listed in the 400. */
export function parseInput<T>(schema: ZodType<T>, input: unknown): T {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  throw new BadRequestError('invalid_input', 'the request is invalid', {
    details: parsed.error.issues.map((issue) => ({ path: issue.path.join('.'), message: issue.message })),
  });
}
