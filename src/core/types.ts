/** The core vocabulary. Adapters translate provider payloads into these and back; nothing here knows a provider. */

export const CHANNELS = ['sms', 'messenger', 'whatsapp', 'webchat', 'email', 'voice'] as const;
export type Channel = (typeof CHANNELS)[number];

export type Direction = 'inbound' | 'outbound';

/** Our delivery vocabulary; provider statuses map onto it in each adapter. */
export type MessageStatus =
  | 'received' // inbound, stored
  | 'pending' // outbound, written, not yet handed to a provider
  | 'sending' // an attempt is in flight
  | 'uncertain' // an attempt's outcome is unknown and the provider cannot be asked: a coordinator decides
  | 'queued' // the provider accepted it
  | 'sent'
  | 'delivered'
  | 'read'
  | 'undelivered'
  | 'failed';

export interface InboundMessage {
  kind: 'inbound';
  channel: Channel;
  provider: string;
  providerMessageId: string;
  /** The patient's address on this channel (E.164 phone, PSID, email …). */
  from: string;
  /** Our address the patient wrote to. */
  to: string;
  body: string;
  media: MediaRef[];
  receivedAt?: Date;
}

export interface MediaRef {
  url: string;
  contentType?: string;
}

export interface DeliveryStatus {
  kind: 'status';
  channel: Channel;
  provider: string;
  providerMessageId: string;
  status: MessageStatus;
  errorCode?: string;
  errorMessage?: string;
}

export type ChannelEvent = InboundMessage | DeliveryStatus;

export interface OutboundMessage {
  channel: Channel;
  /** The patient's address on that channel. */
  to: string;
  body: string;
  media: MediaRef[];
  /** When the patient last wrote on this identity: Meta's messaging windows are measured from it. */
  lastInboundAt?: Date | null;
}

export type CoordinatorRole = 'coordinator' | 'supervisor' | 'admin';
