import { z } from 'zod';
import { ProviderError } from '../errors.ts';
import type { ChannelEvent, MessageStatus, OutboundMessage } from '../core/types.ts';
import type { ChannelAdapter, WebhookRequest } from './channel.ts';
import { graphUrl, outsideWindowError, parseWebhookShape, postGraph, STANDARD_WINDOW_MS } from './meta-messenger.ts';
import { parseMetaJson, verifyMetaSignature, verifySubscription, type SubscriptionVerifier } from './meta-signature.ts';

// Sent with fetch, not an SDK: see the note at the top of meta-messenger.ts.

export interface WhatsAppConfig {
  appSecret: string;
  verifyToken: string;
  accessToken: string;
  phoneNumberId: string;
  /** Unset means https://graph.facebook.com; demo mode and tests point it at the loopback fake. */
  graphApiBase?: string;
  graphApiVersion?: string;
  timeoutMs: number;
  now?: () => Date;
  /**
   * An approved template sent, without parameters, when the 24-hour window is closed. Its text is the
   * template's, not the coordinator's: make it a "please reply to continue" nudge.
   */
  whatsappTemplate?: { name: string; languageCode: string };
}

export interface WhatsAppAdapter extends ChannelAdapter, SubscriptionVerifier {}

/** WhatsApp's message statuses in our vocabulary; statuses we don't track map to undefined and are ignored. */
export function mapWhatsAppStatus(status: string): MessageStatus | undefined {
  switch (status) {
    case 'sent':
      return 'sent';
    case 'delivered':
      return 'delivered';
    case 'read':
      return 'read';
    case 'failed':
      return 'failed';
    default:
      return undefined;
  }
}

/** wa_id and `from` are international digits without '+'; E.164 adds it back. */
export function toE164(digits: string): string {
  return '+' + digits.replace(/\D/g, '');
}

const unixSeconds = z.union([z.string().regex(/^\d+$/), z.number().int().nonnegative()]).transform(Number);
const media = z.object({ id: z.string().min(1), mime_type: z.string().optional(), caption: z.string().optional() });
const whatsAppMessage = z.object({
  from: z.string().regex(/^\+?\d{5,15}$/),
  id: z.string().min(1),
  timestamp: unixSeconds,
  type: z.string(),
  text: z.object({ body: z.string() }).optional(),
  image: media.optional(),
  video: media.optional(),
  audio: media.optional(),
  document: media.optional(),
  sticker: media.optional(),
  button: z.object({ text: z.string() }).optional(),
  interactive: z
    .object({ button_reply: z.object({ title: z.string() }).optional(), list_reply: z.object({ title: z.string() }).optional() })
    .optional(),
});
const whatsAppStatus = z.object({
  id: z.string().min(1),
  status: z.string(),
  errors: z
    .array(z.object({ code: z.number().int(), title: z.string().optional(), message: z.string().optional(), error_data: z.object({ details: z.string().optional() }).optional() }))
    .optional(),
});
const messagesValue = z.object({
  metadata: z.object({ display_phone_number: z.string(), phone_number_id: z.string() }),
  messages: z.array(whatsAppMessage).optional(),
  statuses: z.array(whatsAppStatus).optional(),
});
const whatsAppEnvelope = z.object({
  object: z.string(),
  entry: z.array(z.object({ id: z.string().optional(), changes: z.array(z.object({ field: z.string(), value: z.unknown() })).optional() })),
});

const MEDIA_TYPES = ['image', 'video', 'audio', 'document', 'sticker'] as const;

type WhatsAppMessage = z.infer<typeof whatsAppMessage>;

/** The text and media of an inbound message, or null for kinds we do not store (reaction, location, system …). */
function readContent(message: WhatsAppMessage): { body: string; media: { url: string; contentType?: string }[] } | null {
  switch (message.type) {
    case 'text':
      return message.text ? { body: message.text.body, media: [] } : null;
    case 'button':
      return message.button ? { body: message.button.text, media: [] } : null;
    case 'interactive': {
      const title = message.interactive?.button_reply?.title ?? message.interactive?.list_reply?.title;
      return title === undefined ? null : { body: title, media: [] };
    }
    default: {
      const kind = MEDIA_TYPES.find((t) => t === message.type);
      const item = kind ? message[kind] : undefined;
      if (!item) return null;
      // Media arrive as an id; fetching the bytes needs a second authenticated Graph call, left to the caller.
      return { body: item.caption ?? '', media: [{ url: `whatsapp-media:${item.id}`, ...(item.mime_type ? { contentType: item.mime_type } : {}) }] };
    }
  }
}

export function createWhatsApp(config: WhatsAppConfig): WhatsAppAdapter {
  if (!config.appSecret) throw new Error('WhatsApp appSecret is required: without it any webhook would verify');
  const now = config.now ?? (() => new Date());
  const sendUrl = graphUrl(config.graphApiBase, config.graphApiVersion, `${encodeURIComponent(config.phoneNumberId)}/messages`);

  function messageBody(message: OutboundMessage): Record<string, unknown> {
    const base = { messaging_product: 'whatsapp', recipient_type: 'individual', to: message.to };
    const lastInboundAt = message.lastInboundAt;
    if (lastInboundAt && now().getTime() - lastInboundAt.getTime() < STANDARD_WINDOW_MS) {
      return { ...base, type: 'text', text: { preview_url: false, body: message.body } };
    }
    if (config.whatsappTemplate) {
      return { ...base, type: 'template', template: { name: config.whatsappTemplate.name, language: { code: config.whatsappTemplate.languageCode } } };
    }
    throw outsideWindowError(
      lastInboundAt
        ? `WhatsApp allows free-form messages only within 24 hours of the customer's last message (last ${lastInboundAt.toISOString()}) and no template is configured`
        : 'WhatsApp allows free-form messages only to a customer who has written in the last 24 hours, and no template is configured',
    );
  }

  return {
    channel: 'whatsapp',
    provider: 'meta',
    lookup: 'none',

    async send(message, options) {
      if (message.media.length > 0) {
        // A WhatsApp media message needs an uploaded media id or a public link, one per message.
        throw new ProviderError('WhatsApp sends text only from the outbox; media needs one send per attachment', { retryable: false, outcome: 'not-sent', code: 'media_unsupported' });
      }
      const json = await postGraph({ url: sendUrl, accessToken: config.accessToken, body: messageBody(message), timeoutMs: config.timeoutMs, signal: options.signal });
      const id = (json as { messages?: { id?: unknown }[] }).messages?.[0]?.id;
      if (typeof id !== 'string' || id === '') {
        throw new ProviderError('Cloud API answered without messages[0].id', { retryable: true, outcome: 'unknown', code: 'invalid_response' });
      }
      return { providerMessageId: id };
    },

    async findSent() {
      // The Cloud API neither lists sent messages nor takes an idempotency key, so an ambiguous send cannot be
      // looked up (lookup: 'none'): the outbox holds it as uncertain for a coordinator (see meta-messenger.ts).
      return [];
    },

    parseWebhook(request: WebhookRequest) {
      verifyMetaSignature(request, config.appSecret);
      const body = parseWebhookShape(whatsAppEnvelope, parseMetaJson(request.rawBody), 'WhatsApp webhook');
      const events: ChannelEvent[] = [];
      if (body.object !== 'whatsapp_business_account') return events;
      for (const entry of body.entry) {
        for (const change of entry.changes ?? []) {
          if (change.field !== 'messages') continue;
          const value = parseWebhookShape(messagesValue, change.value, 'WhatsApp messages change');
          // One business account may hold several numbers; another number's events are not ours to store.
          if (value.metadata.phone_number_id !== config.phoneNumberId) continue;
          const to = toE164(value.metadata.display_phone_number);
          for (const message of value.messages ?? []) {
            const content = readContent(message);
            if (!content) continue;
            events.push({
              kind: 'inbound',
              channel: 'whatsapp',
              provider: 'meta',
              providerMessageId: message.id,
              from: toE164(message.from),
              to,
              ...content,
              receivedAt: new Date(message.timestamp * 1000),
            });
          }
          for (const item of value.statuses ?? []) {
            const status = mapWhatsAppStatus(item.status);
            if (!status) continue;
            const error = item.errors?.[0];
            const errorMessage = error?.error_data?.details ?? error?.message ?? error?.title;
            events.push({
              kind: 'status',
              channel: 'whatsapp',
              provider: 'meta',
              providerMessageId: item.id,
              status,
              ...(error ? { errorCode: String(error.code) } : {}),
              ...(errorMessage ? { errorMessage } : {}),
            });
          }
        }
      }
      return events;
    },

    verifySubscription(query) {
      return verifySubscription(query, config.verifyToken);
    },
  };
}
