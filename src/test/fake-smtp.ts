import type { Socket } from 'node:net';
import { simpleParser, type ParsedMail } from 'mailparser';
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';

/**
 * A loopback SMTP sink standing in for the organisation's outbound mail server: a real SMTP server
 * (smtp-server) that nodemailer talks to unmodified. It keeps every accepted message, raw and parsed, and
 * takes one-shot faults for the next message (FIFO), applied after DATA:
 * - `reply`: answer with that SMTP code (4xx temporary, 5xx permanent) and keep nothing;
 * - `latency`: wait `ms`, then accept;
 * - `drop-before-accept`: destroy the connection without keeping the message;
 * - `drop-after-accept`: keep the message, then destroy the connection without answering (the sender cannot
 *   know it was delivered).
 */
export type FakeSmtpFault =
  | { kind: 'reply'; code: number; message?: string }
  | { kind: 'latency'; ms: number }
  | { kind: 'drop-before-accept' }
  | { kind: 'drop-after-accept' };

export interface ReceivedEmail {
  mailFrom: string | null;
  rcptTo: string[];
  raw: Buffer;
  parsed: ParsedMail;
  /** The headers that matter for threading, as they crossed the wire. */
  messageId: string | undefined;
  inReplyTo: string | undefined;
  references: string[];
  subject: string | undefined;
  text: string;
}

export interface FakeSmtp {
  host: string;
  port: number;
  received: ReceivedEmail[];
  /** Every DATA the sink saw, including faulted ones. */
  attempts: number;
  enqueueFault(fault: FakeSmtpFault): void;
  close(): Promise<void>;
}

export async function startFakeSmtp(options: { user?: string; pass?: string } = {}): Promise<FakeSmtp> {
  const faults: FakeSmtpFault[] = [];
  const sockets = new Map<number, Socket>();
  const fake: FakeSmtp = {
    host: '127.0.0.1',
    port: 0,
    received: [],
    attempts: 0,
    enqueueFault: (fault) => void faults.push(fault),
    close: () => new Promise<void>((resolve) => {
      for (const socket of sockets.values()) socket.destroy();
      server.close(() => resolve());
    }),
  };

  async function keep(raw: Buffer, session: SMTPServerSession): Promise<void> {
    const parsed = await simpleParser(raw);
    const references = Array.isArray(parsed.references) ? parsed.references : parsed.references ? [parsed.references] : [];
    fake.received.push({
      mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : null,
      rcptTo: session.envelope.rcptTo.map((r) => r.address),
      raw,
      parsed,
      messageId: parsed.messageId,
      inReplyTo: parsed.inReplyTo,
      references,
      subject: parsed.subject,
      text: parsed.text ?? '',
    });
  }

  const server = new SMTPServer({
    authOptional: !options.user,
    disabledCommands: options.user ? ['STARTTLS'] : ['AUTH', 'STARTTLS'],
    allowInsecureAuth: true,
    logger: false,
    onAuth(auth, _session, callback) {
      if (auth.username === options.user && auth.password === options.pass) callback(null, { user: auth.username });
      else callback(Object.assign(new Error('5.7.8 authentication failed'), { responseCode: 535 }));
    },
    onData(stream: SMTPServerDataStream, session: SMTPServerSession, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        fake.attempts += 1;
        const raw = Buffer.concat(chunks);
        const fault = faults.shift();
        const socket = sockets.get(session.remotePort);
        void (async () => {
          if (fault?.kind === 'reply') return callback(Object.assign(new Error(fault.message ?? `fake failure ${fault.code}`), { responseCode: fault.code }));
          if (fault?.kind === 'drop-before-accept') return void socket?.destroy();
          if (fault?.kind === 'latency') await new Promise((resolve) => setTimeout(resolve, fault.ms));
          await keep(raw, session);
          if (fault?.kind === 'drop-after-accept') return void socket?.destroy();
          callback();
        })().catch((error: unknown) => callback(error as Error));
      });
    },
  });
  server.server.on('connection', (socket: Socket) => {
    const port = socket.remotePort;
    if (port === undefined) return;
    sockets.set(port, socket);
    socket.on('close', () => sockets.delete(port));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.server.address();
  fake.port = typeof address === 'object' && address ? address.port : 0;
  return fake;
}
