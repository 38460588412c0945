import pino, { type DestinationStream, type Logger, type LoggerOptions } from 'pino';

/**
 * The production logger. Two promises, both about what a log line must never do:
 *  - carry patient data or secrets: request URLs lose their query string, errors keep only type/message/code/stack
 *    (PGlite attaches the failing query's `params` to its errors, pg's `detail` quotes the offending row), numbers
 *    and email addresses in messages are masked, and any field named like a body, phone, email or token is censored;
 *  - hold the process hostage: stdout is written asynchronously through a bounded buffer, and when it breaks
 *    (EPIPE: the reader is gone) or stays full, lines are dropped and counted instead of retried.
 */
export interface ProcessLog {
  logger: Logger;
  /** Lines lost so far: refused by a full buffer, written after stdout broke, or still buffered when it broke. */
  droppedLines(): number;
  /** Resolves once every accepted line is written, stdout has broken, or timeoutMs has passed; never rejects. */
  flush(timeoutMs: number): Promise<void>;
}

/** About 5,000 typical lines: enough to ride out a slow reader, small enough to be no memory risk. */
const DEFAULT_MAX_BUFFER_BYTES = 1024 * 1024;

export function createProcessLog(options: { level: string; fd?: number; maxBufferBytes?: number }): ProcessLog {
  // minLength 0: a line goes out as soon as the previous write returns (lines arriving meanwhile are batched), so
  // a quiet server's logs are not held back and a crash loses at most the lines queued behind one write.
  const destination = pino.destination({ dest: options.fd ?? 1, sync: false, minLength: 0, maxLength: options.maxBufferBytes ?? DEFAULT_MAX_BUFFER_BYTES });
  // pino calls flushSync from process.on('exit'), and sonic-boom's flushSync retries a failed write every 100 ms
  // for ever whatever the error (EPIPE included): a server whose reader had gone hung there, deaf to SIGTERM.
  // Lines are flushed asynchronously by stop (flush below) instead; exit never writes.
  destination.flushSync = () => {};

  let dropped = 0;
  let broken = false;
  let refused = false;
  // Byte lengths of the lines accepted but not yet wholly written, oldest first, so a break counts them as lost.
  const pending: number[] = [];
  let writtenOfOldest = 0;
  const waiters = new Set<() => void>();
  const wake = () => {
    if (pending.length > 0 && !broken) return;
    for (const waiter of waiters) waiter();
    waiters.clear();
  };

  destination.on('drop', () => {
    dropped += 1;
    refused = true;
  });
  destination.on('write', (bytes: number) => {
    let written = writtenOfOldest + bytes;
    while (pending.length > 0 && written >= pending[0]!) written -= pending.shift()!;
    writtenOfOldest = written;
    wake();
  });
  // Any write error ends logging to this destination (pino's own handler does so for EPIPE only, uncounted).
  destination.on('error', () => {
    if (broken) return;
    broken = true;
    dropped += pending.length;
    pending.length = 0;
    wake();
  });

  const stream: DestinationStream = {
    write(line: string) {
      if (broken) {
        dropped += 1;
        return;
      }
      refused = false;
      destination.write(line);
      if (!refused) pending.push(Buffer.byteLength(line));
    },
  };

  return {
    logger: pino(loggerOptions(options.level), stream),
    droppedLines: () => dropped,
    flush(timeoutMs) {
      if (broken || pending.length === 0) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, timeoutMs);
        waiters.add(done);
      });
    },
  };
}

const CENSORED_KEYS = ['body', 'text', 'phone', 'email', 'address', 'password', 'token', 'params', 'parameters', 'values', 'query'];

/** pino options every production logger shares: serializers and redaction. Exported for tests that log to memory. */
export function loggerOptions(level: string): LoggerOptions {
  return {
    level,
    serializers: { req: serializeRequest, res: serializeReply, err: serializeError },
    redact: {
      paths: [
        ...CENSORED_KEYS.flatMap((key) => [key, `*.${key}`]),
        'headers.authorization',
        'headers.cookie',
        '*.headers.authorization',
        '*.headers.cookie',
        '*.headers["set-cookie"]',
      ],
      censor: '[redacted]',
    },
    hooks: {
      // Messages are constant strings in our code; Fastify and libraries sometimes put an error's message there.
      logMethod(args, method) {
        method.apply(this, args.map((arg) => (typeof arg === 'string' ? maskContacts(arg) : arg)) as Parameters<typeof method>);
      },
    },
  };
}

interface RequestLike {
  method?: string;
  url?: string;
  ip?: string;
  socket?: { remotePort?: number };
}

/** Replaces Fastify's request serializer: the path only, since query strings carry search words and webhook tokens. */
export function serializeRequest(request: RequestLike): Record<string, unknown> {
  return { method: request.method, path: request.url?.split('?')[0], remoteAddress: request.ip, remotePort: request.socket?.remotePort };
}

function serializeReply(reply: { statusCode?: number }): Record<string, unknown> {
  return { statusCode: reply.statusCode };
}

export interface SerializedError {
  type: string;
  message: string;
  code?: string | number;
  stack?: string;
  cause?: SerializedError;
}

const MAX_CAUSE_DEPTH = 5;

/**
 * Keeps type, message, code and the stack's frames, and the same of each cause; every other field (a driver's
 * `params`, `detail`, `query`, a provider's response body) is left out, whatever it holds.
 */
export function serializeError(error: unknown, depth = 0): SerializedError {
  if (typeof error !== 'object' || error === null) return { type: typeof error, message: maskContacts(String(error)) };
  const { message, code, stack, cause } = error as { message?: unknown; code?: unknown; stack?: unknown; cause?: unknown };
  const serialized: SerializedError = { type: error.constructor?.name ?? 'Object', message: maskContacts(typeof message === 'string' ? message : '') };
  if (typeof code === 'string' || typeof code === 'number') serialized.code = code;
  // The stack's first lines repeat the message unmasked; the frames are what a stack adds.
  if (typeof stack === 'string') serialized.stack = stack.split('\n').filter((line) => /^\s+at /.test(line)).join('\n');
  if (cause !== undefined && depth < MAX_CAUSE_DEPTH) serialized.cause = serializeError(cause, depth + 1);
  return serialized;
}

// Seven or more digits, optionally split by spaces, hyphens or brackets: phone numbers in any common format.
// Dots and colons do not join runs, so IP addresses and ports stay readable.
const PHONE_LIKE = /\+?\d(?:[ ()-]{0,2}\d){6,}/g;
const EMAIL_LIKE = /[^\s@"'<>(),;:]+@[^\s@"'<>(),;:]+\.[A-Za-z]{2,}/g;

/** Masks phone numbers and email addresses in free text (driver and provider messages quote the values they refused). */
export function maskContacts(text: string): string {
  return text.replace(EMAIL_LIKE, '[email]').replace(PHONE_LIKE, '[number]');
}
