import twilio from 'twilio';
import { BadRequestError, ForbiddenError, ProviderError } from '../errors.ts';
import type { ChannelEvent, MessageStatus, OutboundMessage } from '../core/types.ts';
import type { ChannelAdapter, WebhookRequest } from './channel.ts';
import { createTwilioClient } from './twilio-client.ts';

export interface TwilioSmsConfig {
  accountSid: string;
  authToken: string;
  fromNumber?: string;
  messagingServiceSid?: string;
  /** Where the SDK sends API calls; unset means api.twilio.com. Demo mode and tests point it at the loopback fake. */
  apiBase?: string;
  /** Our public URL for Twilio's status callbacks. */
  statusCallbackUrl: string;
  timeoutMs: number;
}

/** Twilio's message statuses in our vocabulary; statuses we don't track map to undefined and are ignored. */
export function mapTwilioStatus(status: string): MessageStatus | undefined {
  switch (status) {
    case 'accepted':
    case 'scheduled':
    case 'queued':
      return 'queued';
    case 'sending':
      return 'sending';
    case 'sent':
      return 'sent';
    case 'delivered':
      return 'delivered';
    case 'read':
      return 'read';
    case 'undelivered':
      return 'undelivered';
    case 'failed':
    case 'canceled':
      return 'failed';
    default:
      return undefined;
  }
}

// Errors that will not go away by retrying: https://www.twilio.com/docs/api/errors
const PERMANENT_SEND_ERRORS = new Map<number, string>([
  [21211, 'invalid To number'],
  [21610, 'recipient opted out (replied STOP)'],
  [21614, 'To number is not a mobile number'],
  [21408, 'region not enabled for this account'],
  [21612, 'To number is not reachable from this From number'],
  [21617, 'message body too long'],
]);

// Permanent errors about the recipient, not the message: the outbox moves the reply to another channel.
const UNREACHABLE_ERRORS = new Set([21211, 21614, 21408, 21612]);

// Connection failures where the request never reached Twilio, so resending cannot duplicate.
const NEVER_CONNECTED = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

export function classifyTwilioError(error: unknown): ProviderError {
  if (error instanceof ProviderError) return error;
  const e = error as { status?: number; code?: number | string; message?: string; moreInfo?: string };
  const message = e?.message ?? String(error);
  if (typeof e?.status === 'number') {
    const code = typeof e.code === 'number' ? e.code : undefined;
    if (e.status === 429 || code === 20429) {
      // Twilio: a 429 request was "never processed and always safe to retry".
      return new ProviderError(message, { retryable: true, outcome: 'not-sent', code: String(code ?? 20429), httpStatus: 429 }, { cause: error });
    }
    if (e.status >= 500) {
      return new ProviderError(message, { retryable: true, outcome: 'unknown', code: String(code ?? e.status), httpStatus: e.status }, { cause: error });
    }
    if (e.status === 401 || e.status === 403) {
      // Our credentials are wrong: every message would fail the same way, so wait for an operator rather than fail them all.
      return new ProviderError(message, { retryable: true, outcome: 'not-sent', code: String(code ?? e.status), httpStatus: e.status }, { cause: error });
    }
    const reason = code !== undefined ? PERMANENT_SEND_ERRORS.get(code) : undefined;
    const identity = code === undefined ? undefined : code === 21610 ? 'opted_out' : UNREACHABLE_ERRORS.has(code) ? 'unreachable' : undefined;
    return new ProviderError(reason ? `${reason}: ${message}` : message, { retryable: false, outcome: 'not-sent', code: String(code ?? e.status), httpStatus: e.status, ...(identity ? { identity } : {}) }, { cause: error });
  }
  const networkCode = typeof e?.code === 'string' ? e.code : 'network_error';
  return new ProviderError(message, { retryable: true, outcome: NEVER_CONNECTED.has(networkCode) ? 'not-sent' : 'unknown', code: networkCode }, { cause: error });
}

/** Form bodies as Twilio signs them: repeated keys become arrays. */
export function parseForm(rawBody: Buffer): Record<string, string | string[]> {
  const params: Record<string, string | string[]> = {};
  for (const [key, value] of new URLSearchParams(rawBody.toString('utf8'))) {
    const existing = params[key];
    if (existing === undefined) params[key] = value;
    else params[key] = Array.isArray(existing) ? [...existing, value] : [existing, value];
  }
  return params;
}

const single = (value: string | string[] | undefined): string | undefined => (Array.isArray(value) ? value[0] : value);

export function createTwilioSms(config: TwilioSmsConfig): ChannelAdapter {
  const client = createTwilioClient({ accountSid: config.accountSid, authToken: config.authToken, apiBase: config.apiBase, timeoutMs: config.timeoutMs });
  const sender = config.messagingServiceSid ? { messagingServiceSid: config.messagingServiceSid } : { from: config.fromNumber! };

  function verify(request: WebhookRequest): Record<string, string | string[]> {
    const signature = single(request.headers['x-twilio-signature']);
    if (!signature) throw new ForbiddenError('signature_missing', 'X-Twilio-Signature header is missing');
    const params = parseForm(request.rawBody);
    // validateRequest also tries the URL with and without a default port, as Twilio documents.
    if (!twilio.validateRequest(config.authToken, signature, request.publicUrl, params)) {
      throw new ForbiddenError('signature_invalid', 'X-Twilio-Signature does not match');
    }
    return params;
  }

  return {
    channel: 'sms',
    provider: 'twilio',
    lookup: 'conclusive',

    async send(message: OutboundMessage) {
      try {
        const created = await client.messages.create({
          ...sender,
          to: message.to,
          body: message.body,
          ...(message.media.length > 0 ? { mediaUrl: message.media.map((m) => m.url) } : {}),
          statusCallback: config.statusCallbackUrl,
        });
        return { providerMessageId: created.sid };
      } catch (error) {
        throw classifyTwilioError(error);
      }
    },

    async findSent(message, { since }) {
      // No DateSent filter: a message Twilio accepted but has not sent yet has no date_sent and would be missed.
      // Newest first, and one patient has at most one send in flight, so the recent page is enough.
      try {
        const recent = await client.messages.list({ to: message.to, ...(config.fromNumber && !config.messagingServiceSid ? { from: config.fromNumber } : {}), pageSize: 50, limit: 50 });
        const skewMs = 5 * 60_000;
        return recent
          .filter((m) => m.direction !== 'inbound' && m.body === message.body && m.dateCreated.getTime() >= since.getTime() - skewMs)
          .filter((m) => !config.messagingServiceSid || m.messagingServiceSid === config.messagingServiceSid)
          .sort((a, b) => a.dateCreated.getTime() - b.dateCreated.getTime())
          .map((m) => m.sid);
      } catch (error) {
        throw classifyTwilioError(error);
      }
    },

    parseWebhook(request) {
      const params = verify(request);
      const messageSid = single(params.MessageSid) ?? single(params.SmsSid);
      if (!messageSid) throw new BadRequestError('invalid_webhook', 'MessageSid is missing');
      const messageStatus = single(params.MessageStatus);
      if (messageStatus !== undefined) {
        const status = mapTwilioStatus(messageStatus);
        if (!status) return [];
        const event: ChannelEvent = {
          kind: 'status',
          channel: 'sms',
          provider: 'twilio',
          providerMessageId: messageSid,
          status,
          errorCode: single(params.ErrorCode) || undefined,
          errorMessage: single(params.ErrorMessage) || undefined,
        };
        return [event];
      }
      const from = single(params.From);
      const to = single(params.To);
      if (!from || !to) throw new BadRequestError('invalid_webhook', 'From and To are required');
      const mediaCount = Math.min(Number(single(params.NumMedia) ?? 0) || 0, 10);
      const media = Array.from({ length: mediaCount }, (_, i) => ({
        url: single(params[`MediaUrl${i}`]) ?? '',
        contentType: single(params[`MediaContentType${i}`]),
      })).filter((m) => m.url !== '');
      return [{ kind: 'inbound', channel: 'sms', provider: 'twilio', providerMessageId: messageSid, from, to, body: single(params.Body) ?? '', media }];
    },
  };
}
