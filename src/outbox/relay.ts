import type { Logger } from 'pino';
import type { ChannelAdapter } from '../channels/channel.ts';
import type { Channel, OutboundMessage } from '../core/types.ts';
import { DEFAULT_BACKOFF, nextRetryDelayMs, type BackoffPolicy } from '../core/retry.ts';
import { ProviderError } from '../errors.ts';
import type { ReplyRules } from '../core/reply-channel.ts';
import type { Db, Session } from '../db/db.ts';
import { OUTBOX_CHANNEL } from '../db/notify.ts';
import { claimSends, knownProviderMessageIds, recordAttempts, registerWorker, type AttemptResult, type ClaimedSend } from '../db/outbox.ts';
import { createWakeSignal } from './wake-signal.ts';

export interface OutboxRelayOptions {
  db: Db;
  adapters: ReadonlyMap<Channel, ChannelAdapter>;
  logger: Logger;
  /** Sends in flight at once, across patients (one patient never has more than one). */
  maxInFlight: number;
  sendTimeoutMs: number;
  /** Sleep between polls when nothing woke us; NOTIFY normally wakes the relay long before. */
  pollMs: number;
  backoff?: BackoffPolicy;
  /** A message still undelivered this long after it was written fails as expired instead of retrying forever. */
  maxAgeMs?: number;
  random?: () => number;
  /** The clock and template channels for choosing a fallback channel when a send fails on its identity. */
  replyRules?: ReplyRules;
  /** src/ops/metrics.ts implements it. */
  metrics?: RelayMetrics;
}

export interface RelayMetrics {
  providerError(provider: string, code: string): void;
  replyToProviderAccepted(seconds: number): void;
  outboundFinal(status: string): void;
}

export interface OutboxRelay {
  readonly workerKey: number;
  /** Resolves when every claimed send has been attempted and recorded. */
  stop(): Promise<void>;
}

/**
 * The delivery worker: claim → send → record, in a loop, woken by NOTIFY. See docs/ARCHITECTURE.md
 * ("Exactly once, in order") for why each step is where it is.
 */
export async function startOutboxRelay(options: OutboxRelayOptions): Promise<OutboxRelay> {
  const { db, adapters, logger } = options;
  const backoff = options.backoff ?? DEFAULT_BACKOFF;
  const random = options.random ?? Math.random;
  const maxAgeMs = options.maxAgeMs ?? 24 * 3_600_000;
  // The lease only matters for a worker that is alive but stuck; a dead one is detected by its lock at once.
  const leaseMs = options.sendTimeoutMs * 2 + 30_000;

  const session: Session = await db.openSession();
  const workerKey = await registerWorker(session);
  const log = logger.child({ component: 'outbox', workerKey });

  let stopped = false;
  let inFlight = 0;
  const unrecorded: AttemptResult[] = [];
  let flushing: Promise<void> | null = null;
  // A wake that arrives while we are busy is remembered, so a NOTIFY during a claim is never lost.
  const { wake, sleep } = createWakeSignal();
  const unlisten = await db.listen(OUTBOX_CHANNEL, wake);

  async function attempt(send: ClaimedSend): Promise<AttemptResult> {
    const base = { outboxId: send.outboxId, attempts: send.attempts };
    const adapter = adapters.get(send.channel);
    if (!adapter) return { ...base, kind: 'failed', provider: null, errorCode: 'no_adapter', error: `no adapter configured for channel ${send.channel}`, identity: 'not_now' };
    if (send.optedOut) {
      // Consent is checked at send time too: a STOP can arrive after the reply was written.
      return { ...base, kind: 'failed', provider: null, errorCode: 'opted_out', error: `${send.channel} ${send.address} opted out; not sent`, identity: 'not_now' };
    }
    const message: OutboundMessage = { channel: send.channel, to: send.address, body: send.body, media: send.media, lastInboundAt: send.lastInboundAt };
    const signal = AbortSignal.timeout(options.sendTimeoutMs);
    let needsLookup = send.needsLookup;
    try {
      if (needsLookup) {
        const candidates = await adapter.findSent(message, { since: send.createdAt, signal });
        const known = await knownProviderMessageIds(db, adapter.provider, candidates);
        const found = candidates.find((id) => !known.has(id));
        if (found) {
          log.info({ outboxId: send.outboxId }, 'an earlier attempt had reached the provider; recorded it instead of resending');
          return { ...base, kind: 'sent', provider: adapter.provider, providerMessageId: found };
        }
        needsLookup = false;
      }
      const { providerMessageId } = await adapter.send(message, { outboxId: send.outboxId, signal });
      options.metrics?.replyToProviderAccepted(Math.max(0, Date.now() - send.createdAt.getTime()) / 1000);
      return { ...base, kind: 'sent', provider: adapter.provider, providerMessageId };
    } catch (error) {
      const failure =
        error instanceof ProviderError
          ? error
          : new ProviderError(error instanceof Error ? error.message : String(error), { retryable: true, outcome: 'unknown', code: 'unexpected' }, { cause: error });
      const { retryable, outcome, code, retryAfterMs } = failure.details;
      options.metrics?.providerError(adapter.provider, code);
      if (!retryable) {
        options.metrics?.outboundFinal('failed');
        const identity = failure.details.identity;
        return { ...base, kind: 'failed', provider: adapter.provider, errorCode: code, error: failure.message, ...(identity ? { identity } : {}) };
      }
      if (Date.now() - send.createdAt.getTime() > maxAgeMs) {
        options.metrics?.outboundFinal('failed');
        return { ...base, kind: 'failed', provider: adapter.provider, errorCode: 'expired', error: `undelivered after ${Math.round(maxAgeMs / 3_600_000)}h: ${failure.message}` };
      }
      return {
        ...base,
        kind: 'retry',
        delayMs: nextRetryDelayMs(send.attempts, backoff, random, retryAfterMs),
        // A lookup that failed, or a send whose outcome is unknown, leaves the question open for next time.
        needsLookup: needsLookup || outcome === 'unknown',
        error: `${code}: ${failure.message}`,
      };
    }
  }

  function flush(): Promise<void> {
    flushing ??= (async () => {
      while (unrecorded.length > 0) {
        const batch = unrecorded.splice(0);
        try {
          await recordAttempts(db, workerKey, batch, options.replyRules);
          inFlight -= batch.length;
          wake();
        } catch (error) {
          // Keep the outcomes: they are facts about the provider we must not forget. Try again shortly.
          unrecorded.unshift(...batch);
          log.error({ err: error }, 'recording send outcomes failed; retrying');
          await new Promise((resolve) => setTimeout(resolve, 500));
          if (stopped && (await isDbGone())) return;
        }
      }
    })().finally(() => {
      flushing = null;
    });
    return flushing;
  }

  async function isDbGone(): Promise<boolean> {
    try {
      await db.query('SELECT 1');
      return false;
    } catch {
      return true;
    }
  }

  const loop = (async () => {
    while (!stopped) {
      const room = options.maxInFlight - inFlight;
      if (room <= 0) {
        await sleep(options.pollMs);
        continue;
      }
      let claimed: ClaimedSend[];
      try {
        claimed = await claimSends(db, { workerKey, limit: room, leaseMs });
      } catch (error) {
        log.error({ err: error }, 'claiming sends failed');
        await sleep(Math.min(options.pollMs, 1_000));
        continue;
      }
      if (claimed.length === 0) {
        await sleep(options.pollMs);
        continue;
      }
      inFlight += claimed.length;
      for (const send of claimed) {
        void attempt(send).then((result) => {
          unrecorded.push(result);
          void flush();
        });
      }
    }
  })();

  return {
    workerKey,
    async stop() {
      // A second stop (a test stopped the relay early, then its harness) has nothing left to do.
      if (stopped) return;
      stopped = true;
      wake();
      await loop;
      while (inFlight > 0 && !(await isDbGone())) {
        await flush();
        if (inFlight > 0) await new Promise((resolve) => setTimeout(resolve, 10));
      }
      await unlisten().catch(() => {});
      await session.release();
    },
  };
}
