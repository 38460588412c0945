import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import type { Logger } from 'pino';
import { parseInboundEmail } from '../channels/email.ts';
import type { Db } from '../db/db.ts';
import { recordEmailHeaders } from '../db/email.ts';
import { recordInbound } from '../db/patients.ts';
import { AppError } from '../errors.ts';

export interface SmtpListenerOptions {
  db: Db;
  logger: Logger;
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Larger messages are refused with 552 (advertised in EHLO as SIZE). */
  maxBytes?: number;
}

export interface SmtpListener {
  port: number;
  stop(): Promise<void>;
}

type SmtpError = Error & { responseCode?: number };
const smtpError = (responseCode: number, message: string): SmtpError => Object.assign(new Error(message), { responseCode });

/**
 * Inbound email over real SMTP (smtp-server). Each message is stored exactly once (Message-ID dedupe) and the
 * sender gets `250` only after the commit; if storage fails it gets `451` (a temporary failure), so the sending
 * MTA keeps the message and retries. A message that can never be stored is refused with a 5xx.
 *
 * Meant to sit behind the organisation's MTA (which does spam, SPF/DKIM/DMARC checks and TLS) on loopback or a
 * private network: no AUTH, no STARTTLS here, and the From address is trusted as that MTA left it.
 */
export async function startSmtpListener(options: SmtpListenerOptions): Promise<SmtpListener> {
  const { db } = options;
  const log = options.logger.child({ component: 'smtp-listener' });
  const maxBytes = options.maxBytes ?? 10 * 1024 * 1024;

  async function store(raw: Buffer, session: SMTPServerSession): Promise<void> {
    const mailFrom = session.envelope.mailFrom ? session.envelope.mailFrom.address : undefined;
    const parsed = await parseInboundEmail(raw, { mailFrom, rcptTo: session.envelope.rcptTo.map((r) => r.address) });
    const result = await recordInbound(db, parsed.message);
    // A second commit, but idempotent: a retry after a crash between the two fills the headers in.
    await recordEmailHeaders(db, result.messageId, parsed.headers);
    log.info({ patientId: result.patientId, messageId: result.messageId, duplicate: result.duplicate }, 'inbound email');
  }

  const server = new SMTPServer({
    name: 'switchboard',
    banner: 'Switchboard inbound mail',
    size: maxBytes,
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    logger: false,
    onData(stream: SMTPServerDataStream, session: SMTPServerSession, callback: (error?: Error | null) => void) {
      const chunks: Buffer[] = [];
      let bytes = 0;
      stream.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        if (bytes <= maxBytes) chunks.push(chunk);
      });
      stream.on('error', (error: Error) => callback(smtpError(451, `4.3.0 ${error.message}`)));
      stream.on('end', () => {
        if (stream.sizeExceeded) {
          callback(smtpError(552, '5.3.4 message too big'));
          return;
        }
        store(Buffer.concat(chunks), session).then(
          () => callback(),
          (error: unknown) => {
            if (error instanceof AppError && error.status < 500) {
              log.warn({ code: error.code }, 'inbound email refused');
              callback(smtpError(550, `5.6.0 ${error.message}`));
              return;
            }
            log.error({ err: error }, 'storing inbound email failed; answered 451 so the sender retries');
            callback(smtpError(451, '4.3.0 temporary failure storing the message; try again later'));
          },
        );
      });
    },
  });
  server.on('error', (error) => log.error({ err: error }, 'smtp listener error'));

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  return {
    port,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
