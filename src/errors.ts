/** Errors that cross the HTTP boundary carry a stable `code` and their status; everything else is a 5xx. */
export class AppError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    options?: { cause?: unknown; details?: unknown },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.details = options?.details;
  }
  readonly details: unknown;
}

export class BadRequestError extends AppError {
  constructor(code: string, message: string, options?: { cause?: unknown; details?: unknown }) {
    super(400, code, message, options);
  }
}

export class UnauthorizedError extends AppError {
  constructor(message = 'missing or invalid credentials') {
    super(401, 'unauthorized', message);
  }
}

/** 403: a webhook whose signature fails, or a role that may not use a route. A patient you may not see is a 404 (its existence stays hidden). */
export class ForbiddenError extends AppError {
  constructor(code: string, message: string) {
    super(403, code, message);
  }
}

export class NotFoundError extends AppError {
  constructor(what: string) {
    super(404, 'not_found', `${what} not found`);
  }
}

export class ConflictError extends AppError {
  constructor(code: string, message: string) {
    super(409, code, message);
  }
}

/** 429: a new SSE stream would exceed a cap on open streams (src/http/connection-limits.ts); `details.limit` says which. */
export class TooManyStreamsError extends AppError {
  constructor(message: string, limit: 'per_caller' | 'per_process') {
    super(429, 'too_many_streams', message, { details: { limit } });
  }
}

/**
 * A provider refused or failed a send. `retryable` decides whether the outbox tries again; `outcome` says
 * whether the provider may nevertheless have the message (then the next attempt looks it up first).
 */
export class ProviderError extends Error {
  constructor(
    message: string,
    readonly details: {
      retryable: boolean;
      outcome: 'not-sent' | 'unknown';
      code: string;
      httpStatus?: number;
      retryAfterMs?: number;
      /**
       * Set on a permanent failure caused by the recipient identity rather than the message: the outbox then
       * moves the reply to the patient's next channel (src/db/fallback.ts). `opted_out`: the provider says the
       * address opted out; `unreachable`: it cannot be reached (invalid number, user unavailable); `not_now`:
       * only a messaging window is closed.
       */
      identity?: 'opted_out' | 'unreachable' | 'not_now';
    },
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

// 57P0x: the server is shutting down, restarting or not yet accepting; 08xxx: the connection failed; 53300: no
// connection slot (many clients reconnecting after a restart); 25006: a read-only transaction, which is what a
// connection to a standby answers a write with during a failover.
const DATABASE_UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', '57P01', '57P02', '57P03', '08000', '08001', '08003', '08004', '08006', '53300', '25006']);

/** True when the error means our storage is unavailable (not that the request was bad). */
export function isStorageUnavailable(error: unknown, depth = 0): boolean {
  const cause = (error as { cause?: unknown } | null)?.cause;
  if (cause !== undefined && depth < 5 && isStorageUnavailable(cause, depth + 1)) return true;
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && DATABASE_UNREACHABLE_CODES.has(code)) return true;
  const message = error instanceof Error ? error.message : '';
  return /Connection terminated|timeout exceeded when trying to connect|PGlite is closed|is not queryable|Client was closed|Cannot use a pool after calling end/i.test(message);
}

/** A write addressed a patient that has been merged into another; `mergedInto` is the survivor. */
export class PatientMergedError extends ConflictError {
  constructor(readonly patientId: string, readonly mergedInto: string | null) {
    super('patient_merged', `patient ${patientId} has been merged into ${mergedInto ?? 'another patient'}`);
  }
}
