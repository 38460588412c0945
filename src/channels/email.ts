import { createHash } from 'node:crypto';
import EmailReplyParser from 'email-reply-parser';
import { simpleParser, type AddressObject } from 'mailparser';
import nodemailer, { type Transporter } from 'nodemailer';
import type { Db } from '../db/db.ts';
import { latestInboundEmail, recordEmailHeaders, type EmailThreadHeaders } from '../db/email.ts';
import { findOutboxMessage } from '../db/webchat.ts';
import { BadRequestError, ProviderError } from '../errors.ts';
import type { InboundMessage } from '../core/types.ts';
import type { ChannelAdapter } from './channel.ts';

export const EMAIL_PROVIDER = 'smtp';

export interface EmailConfig {
  host: string;
  port: number;
  /** Implicit TLS (port 465); otherwise STARTTLS is used when the server offers it. */
  secure: boolean;
  user?: string;
  pass?: string;
  /** Our From address, e.g. `Care Team <care@clinic.example>`; its domain also names our Message-IDs. */
  from: string;
  /** Subject of a reply to a patient who has never emailed us. */
  defaultSubject: string;
  timeoutMs: number;
}

/**
 * SMTP reply codes in our vocabulary: 4xx is a temporary failure (RFC 5321 §4.2.1: "the action may be
 * requested again"), 5xx is permanent. A failure without a reply code is a connection problem: before the server
 * could have the message (connect refused, greeting never came) resending cannot duplicate; after DATA started,
 * we cannot know whether it was accepted.
 */
export function classifySmtpError(error: unknown): ProviderError {
  if (error instanceof ProviderError) return error;
  const e = error as { responseCode?: number; code?: string; command?: string; message?: string };
  const message = e?.message ?? String(error);
  const responseCode = typeof e?.responseCode === 'number' ? e.responseCode : undefined;
  if (responseCode !== undefined) {
    if (e.code === 'EAUTH') {
      // Our credentials are wrong: every message would fail alike, so wait for an operator instead of failing them all.
      return new ProviderError(message, { retryable: true, outcome: 'not-sent', code: `smtp_${responseCode}` }, { cause: error });
    }
    if (responseCode >= 400 && responseCode < 500) {
      return new ProviderError(message, { retryable: true, outcome: 'not-sent', code: `smtp_${responseCode}` }, { cause: error });
    }
    return new ProviderError(message, { retryable: false, outcome: 'not-sent', code: `smtp_${responseCode}` }, { cause: error });
  }
  // nodemailer tags an unexpected close at ANY stage as ECONNECTION / CONN "Connection closed unexpectedly", including
  // a close after DATA when the server may already hold the message (the adapter contract's dropped-connection case),
  // so only a connection that never opened (refused, DNS) counts as never sent.
  const closedMidSession = e?.code === 'ECONNECTION' && /closed unexpectedly/i.test(message);
  const neverSent = !closedMidSession && (e?.code === 'ECONNECTION' || e?.command === 'CONN' || e?.code === 'EDNS');
  return new ProviderError(message, { retryable: true, outcome: neverSent ? 'not-sent' : 'unknown', code: e?.code ?? 'smtp_network' }, { cause: error });
}

/** `Re: ` once, however many replies deep. */
export function replySubject(subject: string | null, fallback: string): string {
  const base = subject?.trim();
  if (!base) return fallback;
  return /^(re|aw|sv)\s*:/i.test(base) ? base : `Re: ${base}`;
}

/**
 * The new part of a reply: quoted history ("On … wrote:", "> …", Outlook's "-----Original Message-----") and
 * signatures ("-- ", "Sent from my iPhone") removed by email-reply-parser (a port of GitHub's EmailReplyParser).
 */
export function extractReplyText(text: string): string {
  return new EmailReplyParser().parseReply(text.replace(/\r\n/g, '\n')).trim();
}

const domainOf = (from: string): string => /@([^>\s]+)>?\s*$/.exec(from)?.[1]?.toLowerCase() ?? 'switchboard.invalid';

/**
 * Our Message-ID for an outbox row: the same on every attempt, so if the relay sends twice after an unknown
 * outcome (SMTP has no lookup), the recipient's client can recognise the copy as the same message.
 */
export const outboundMessageId = (outboxId: string, from: string): string => `<outbox-${outboxId}@${domainOf(from)}>`;

export interface ParsedInboundEmail {
  message: InboundMessage;
  headers: EmailThreadHeaders;
}

const firstAddress = (field: AddressObject | AddressObject[] | undefined): string | undefined =>
  (Array.isArray(field) ? field : field ? [field] : []).flatMap((group) => group.value).find((entry) => entry.address)?.address;

/**
 * Parses one message as received over SMTP. The patient's identity is the From address, lower-cased; the
 * dedupe key is the Message-ID (a hash of the raw bytes when a sender omits it, so the same bytes retried
 * still dedupe). Throws BadRequestError for a message we can never store (no sender address).
 */
export async function parseInboundEmail(raw: Buffer, envelope: { mailFrom?: string; rcptTo: string[] }): Promise<ParsedInboundEmail> {
  const parsed = await simpleParser(raw, { skipImageLinks: true, skipTextToHtml: true, skipTextLinks: true });
  const from = (firstAddress(parsed.from) ?? envelope.mailFrom)?.trim().toLowerCase();
  if (!from || !/^[^\s@]+@[^\s@]+$/.test(from)) throw new BadRequestError('invalid_email', 'the message has no usable From address');
  const rfcMessageId = parsed.messageId?.trim() || `<sha256-${createHash('sha256').update(raw).digest('hex')}@switchboard.invalid>`;
  const references = (Array.isArray(parsed.references) ? parsed.references : parsed.references ? parsed.references.split(/\s+/) : []).filter(Boolean);
  const subject = parsed.subject?.trim() || null;
  const reply = extractReplyText(parsed.text ?? '');
  return {
    message: {
      kind: 'inbound',
      channel: 'email',
      provider: EMAIL_PROVIDER,
      providerMessageId: rfcMessageId,
      from,
      to: (envelope.rcptTo[0] ?? firstAddress(parsed.to) ?? '').toLowerCase(),
      // An empty body after stripping (a bare forward, only a quote) keeps the subject, so the log is never blank.
      body: reply || subject || '',
      media: [],
      receivedAt: parsed.date,
    },
    headers: { rfcMessageId, inReplyTo: parsed.inReplyTo?.trim() || null, references, subject },
  };
}

/**
 * The one way we open an SMTP client: patient email and alert email (src/ops/start.ts) share the SMTP_*
 * settings, so an operator configures one mail server once.
 */
export function createSmtpTransport(config: Pick<EmailConfig, 'host' | 'port' | 'secure' | 'user' | 'pass' | 'timeoutMs'>): Transporter {
  return nodemailer.createTransport({
    host: config.host,
    port: config.port,
    secure: config.secure,
    ...(config.user ? { auth: { user: config.user, pass: config.pass ?? '' } } : {}),
    connectionTimeout: config.timeoutMs,
    greetingTimeout: config.timeoutMs,
    socketTimeout: config.timeoutMs,
    // One connection per message: no pooled connection can go stale between sends.
    pool: false,
  });
}

/**
 * Email out through nodemailer to the configured SMTP server. A reply threads under the patient's latest inbound
 * email (In-Reply-To, References, "Re: " + its subject). Inbound email arrives through src/services/smtp-listener.ts.
 */
export function createEmailChannel(config: EmailConfig, deps: { db: Db }): ChannelAdapter {
  const transport = createSmtpTransport(config);

  return {
    channel: 'email',
    provider: EMAIL_PROVIDER,
    lookup: 'none',

    async send(message, { outboxId }) {
      const row = await findOutboxMessage(deps.db, outboxId).catch((error: unknown) => {
        throw new ProviderError('reading the outbox row failed', { retryable: true, outcome: 'not-sent', code: 'storage' }, { cause: error });
      });
      if (!row) throw new ProviderError(`outbox row ${outboxId} not found`, { retryable: false, outcome: 'not-sent', code: 'unknown_outbox' });
      const thread = await latestInboundEmail(deps.db, row.patientId, message.to);
      const messageId = outboundMessageId(outboxId, config.from);
      const subject = replySubject(thread?.subject ?? null, config.defaultSubject);
      const references = thread ? [...thread.references.filter((id) => id !== thread.rfcMessageId), thread.rfcMessageId] : [];
      try {
        await transport.sendMail({
          from: config.from,
          to: message.to,
          subject,
          text: message.body,
          messageId,
          ...(thread ? { inReplyTo: thread.rfcMessageId, references } : {}),
        });
      } catch (error) {
        throw classifySmtpError(error);
      }
      await recordEmailHeaders(deps.db, row.messageId, { rfcMessageId: messageId, inReplyTo: thread?.rfcMessageId ?? null, references, subject }).catch(() => {
        // Threading metadata of our own reply is a convenience; the send itself succeeded and must be recorded.
      });
      return { providerMessageId: messageId };
    },

    // SMTP has no way to ask a server what it accepted (lookup: 'none'): after an unknown outcome the outbox holds
    // the reply as uncertain for a coordinator; a resend they ask for carries the same Message-ID (docs/ARCHITECTURE.md §5).
    async findSent() {
      return [];
    },

    parseWebhook() {
      throw new BadRequestError('not_a_webhook_channel', 'email arrives over SMTP (src/services/smtp-listener.ts), not a webhook');
    },
  };
}
