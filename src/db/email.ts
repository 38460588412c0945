import { storableText } from '../core/text.ts';
import type { Queryable } from './db.ts';

const clean = (value: string) => storableText(value).text;

export interface EmailThreadHeaders {
  /** With angle brackets, as on the wire: `<abc@example.org>`. */
  rfcMessageId: string;
  inReplyTo: string | null;
  references: string[];
  subject: string | null;
}

/** Idempotent: a redelivered email (or a resent reply) keeps the headers stored first. */
export async function recordEmailHeaders(db: Queryable, messageId: string, headers: EmailThreadHeaders): Promise<void> {
  await db.query(
    `INSERT INTO email_headers (message_id, rfc_message_id, in_reply_to, "references", subject) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (message_id) DO NOTHING`,
    // Headers are as unchecked as the body (src/core/text.ts): NUL or a lone surrogate would fail the insert.
    [messageId, clean(headers.rfcMessageId), headers.inReplyTo && clean(headers.inReplyTo), headers.references.map(clean), headers.subject && clean(headers.subject)],
  );
}

/**
 * The patient's latest inbound email, preferring the address we are replying to: a reply threads under it
 * (In-Reply-To its Message-ID, References its References plus its Message-ID, RFC 5322 §3.6.4).
 */
export async function latestInboundEmail(db: Queryable, patientId: string, address: string): Promise<EmailThreadHeaders | null> {
  const result = await db.query<{ rfc_message_id: string; in_reply_to: string | null; references: string[]; subject: string | null }>(
    `SELECT h.rfc_message_id, h.in_reply_to, h."references", h.subject
     FROM messages m JOIN email_headers h ON h.message_id = m.id
     WHERE m.patient_id = $1 AND m.channel = 'email' AND m.direction = 'inbound'
     ORDER BY (m.address = $2) DESC, m.seq DESC LIMIT 1`,
    [patientId, address],
  );
  const row = result.rows[0];
  return row ? { rfcMessageId: row.rfc_message_id, inReplyTo: row.in_reply_to, references: row.references, subject: row.subject } : null;
}
