/**
 * What the outbox does after a failed attempt. `unknown` means the provider may have accepted the message
 * (a 5xx, a timeout, a dropped connection): the next attempt must first look the message up at the provider.
 */
export type SendFailure =
  | { kind: 'retryable'; outcome: 'not-sent' | 'unknown'; code: string; message: string; retryAfterMs?: number }
  | { kind: 'permanent'; code: string; message: string };

export interface BackoffPolicy {
  baseMs: number;
  capMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 500, capMs: 5 * 60_000 };

/** Full-jitter exponential backoff (AWS Architecture blog, "Exponential Backoff and Jitter"). */
export function nextRetryDelayMs(attempt: number, policy: BackoffPolicy, random: () => number, retryAfterMs?: number): number {
  const ceiling = Math.min(policy.capMs, policy.baseMs * 2 ** Math.max(0, attempt - 1));
  const jittered = Math.floor(random() * ceiling);
  return Math.max(jittered, retryAfterMs ?? 0);
}
