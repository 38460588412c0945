import type { Logger } from 'pino';
import type { ChannelAdapter } from '../channels/channel.ts';
import type { Channel, OutboundMessage } from '../core/types.ts';
import { DEFAULT_BACKOFF, nextRetryDelayMs, type BackoffPolicy } from '../core/retry.ts';
import { isStorageUnavailable, ProviderError } from '../errors.ts';
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
  /**
   * How long a provider may still be processing a request we gave up on (plus clock skew between processes). An
   * attempt whose outcome is unknown is looked up no sooner than this after it ended, and a lost claim is taken
   * over no sooner than this after its deadline: a lookup earlier than that could miss a send still landing, and
   * resend it. Default 5 s (OUTBOX_SETTLE_MS).
   */
  settleMs?: number;
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

interface Liveness {
  key: number;
  session: Session;
  lost: boolean;
}

/** Default for `settleMs`. */
const DEFAULT_SETTLE_MS = 5_000;
/** How often the liveness session is checked when nothing else touches it (a dead TCP peer is only noticed on use). */
const LIVENESS_CHECK_MS = 2_000;

/**
 * The delivery worker: claim → send → record, in a loop, woken by NOTIFY. See docs/ARCHITECTURE.md
 * ("Exactly once, in order") for why each step is where it is.
 *
 * Liveness and fencing: the worker holds an advisory lock under a key on a dedicated session. If that session is
 * lost (PostgreSQL restarted or failed over, the backend was terminated), the worker stops claiming, starts no new
 * send, and registers again under a fresh key; its earlier claims are finished (their outcomes recorded, fenced by
 * claim) or, once no send of theirs can still be in flight, taken over with a lookup at the provider.
 */
export async function startOutboxRelay(options: OutboxRelayOptions): Promise<OutboxRelay> {
  const { db, adapters, logger } = options;
  const backoff = options.backoff ?? DEFAULT_BACKOFF;
  const random = options.random ?? Math.random;
  const maxAgeMs = options.maxAgeMs ?? 24 * 3_600_000;
  // The lease only matters for a worker that is alive but stuck; a dead one is detected by its lock.
  const leaseMs = options.sendTimeoutMs * 2 + 30_000;
  // A claim's work must end within two send timeouts of the claim query being sent: one for a slow claim (a busy
  // database), one for the lookup and send. quiet_after adds the margin on top.
  const claimBudgetMs = options.sendTimeoutMs * 2;
  const settleMs = options.settleMs ?? DEFAULT_SETTLE_MS;
  const sendWindowMs = claimBudgetMs + settleMs;

  let log = logger.child({ component: 'outbox' });
  /** The current registration; null while the worker has no liveness lock (between a lost session and a new one). */
  let liveness = null as Liveness | null;

  async function register(): Promise<void> {
    const session = await db.openSession();
    try {
      const key = await registerWorker(session);
      const current = { key, session, lost: false };
      liveness = current;
      log = logger.child({ component: 'outbox', workerKey: key });
      void session.lost.then(() => {
        current.lost = true;
        if (liveness === current) liveness = null;
        log.warn('liveness session lost; no new sends until registered again');
        void session.release().catch(() => {});
        wake();
      });
    } catch (error) {
      await session.release().catch(() => {});
      throw error;
    }
  }

  let stopped = false;
  let inFlight = 0;
  const unrecorded: AttemptResult[] = [];
  let flushing: Promise<void> | null = null;
  // A wake that arrives while we are busy is remembered, so a NOTIFY during a claim is never lost.
  const { wake, sleep } = createWakeSignal();
  await register();
  const firstKey = liveness!.key;
  // After a lost LISTEN connection, notifications may have been missed: look for work at once.
  const unlisten = await db.listen(OUTBOX_CHANNEL, wake, { onReconnect: wake });

  // A session that nothing uses would notice a dead server only on its next use: ask it something now and then.
  const livenessCheck = setInterval(() => {
    const current = liveness;
    if (current) current.session.query('SELECT 1').catch(() => {});
  }, LIVENESS_CHECK_MS);
  livenessCheck.unref();

  async function attempt(send: ClaimedSend, claim: { lost: boolean }, deadline: number): Promise<AttemptResult> {
    const base = { outboxId: send.outboxId, fence: send.fence, attempted: false };
    const adapter = adapters.get(send.channel);
    if (!adapter) return { ...base, kind: 'failed', provider: null, errorCode: 'no_adapter', error: `no adapter configured for channel ${send.channel}`, identity: 'not_now' };
    if (send.optedOut) {
      // Consent is checked at send time too: a STOP can arrive after the reply was written.
      return { ...base, kind: 'failed', provider: null, errorCode: 'opted_out', error: `${send.channel} ${send.address} opted out; not sent`, identity: 'not_now' };
    }
    const message: OutboundMessage = { channel: send.channel, to: send.address, body: send.body, media: send.media, lastInboundAt: send.lastInboundAt };
    // The whole claim (lookup and send) ends by the deadline taken before the claim was made, so that once the row's
    // quiet_after has passed no send of this claim can still begin or be in flight.
    const signal = AbortSignal.timeout(Math.max(0, Math.min(options.sendTimeoutMs, deadline - Date.now())));
    let needsLookup = send.needsLookup;
    let asked = false;
    try {
      if (needsLookup) {
        // No lookup is possible and a resend might reach the patient twice: the row waits for a coordinator.
        if (adapter.lookup === 'none') return { ...base, kind: 'uncertain', provider: adapter.provider };
        const candidates = await adapter.findSent(message, { since: send.createdAt, signal });
        const known = await knownProviderMessageIds(db, adapter.provider, candidates);
        const found = candidates.find((id) => !known.has(id));
        if (found) {
          log.info({ outboxId: send.outboxId }, 'an earlier attempt had reached the provider; recorded it instead of resending');
          return { ...base, attempted: true, kind: 'sent', provider: adapter.provider, providerMessageId: found };
        }
        needsLookup = false;
      }
      // Fenced: a worker that lost its liveness lock starts no send on a claim made under it.
      if (claim.lost || signal.aborted) return { ...base, kind: 'released' };
      asked = true;
      const { providerMessageId } = await adapter.send(message, { outboxId: send.outboxId, signal });
      options.metrics?.replyToProviderAccepted(Math.max(0, Date.now() - send.createdAt.getTime()) / 1000);
      return { ...base, attempted: true, kind: 'sent', provider: adapter.provider, providerMessageId };
    } catch (error) {
      // Our storage failing (the lookup's check, or a channel we host ourselves) says nothing about the provider:
      // no attempt, no error recorded, no backoff. The lookup question stays as it was.
      if (!(error instanceof ProviderError) && isStorageUnavailable(error)) return { ...base, kind: 'released' };
      const failure =
        error instanceof ProviderError
          ? error
          : new ProviderError(error instanceof Error ? error.message : String(error), { retryable: true, outcome: 'unknown', code: 'unexpected' }, { cause: error });
      const { retryable, outcome, code, retryAfterMs } = failure.details;
      options.metrics?.providerError(adapter.provider, code);
      const attempted = asked;
      if (!retryable) {
        options.metrics?.outboundFinal('failed');
        const identity = failure.details.identity;
        return { ...base, attempted, kind: 'failed', provider: adapter.provider, errorCode: code, error: failure.message, ...(identity ? { identity } : {}) };
      }
      if (Date.now() - send.createdAt.getTime() > maxAgeMs) {
        options.metrics?.outboundFinal('failed');
        return { ...base, attempted, kind: 'failed', provider: adapter.provider, errorCode: 'expired', error: `undelivered after ${Math.round(maxAgeMs / 3_600_000)}h: ${failure.message}` };
      }
      return {
        ...base,
        attempted,
        kind: 'retry',
        // After an unknown outcome the provider may still be creating the message: look it up only once it has settled.
        delayMs: Math.max(nextRetryDelayMs(send.attempts + 1, backoff, random, retryAfterMs), outcome === 'unknown' ? settleMs : 0),
        // A lookup that failed, or a send whose outcome is unknown, leaves the question open for next time.
        needsLookup: needsLookup || outcome === 'unknown',
        error: `${code}: ${failure.message}`,
      };
    }
  }

  function flush(): Promise<void> {
    flushing ??= (async () => {
      let failures = 0;
      while (unrecorded.length > 0) {
        const batch = unrecorded.splice(0);
        try {
          await recordAttempts(db, batch, options.replyRules);
          inFlight -= batch.length;
          failures = 0;
          wake();
        } catch (error) {
          // Keep the outcomes: they are facts about the provider we must not forget. Try again, backing off while
          // the database is away (and saying so once, not twice a second).
          unrecorded.unshift(...batch);
          if (failures++ === 0) log.error({ err: error }, 'recording send outcomes failed; retrying');
          await new Promise((resolve) => setTimeout(resolve, Math.min(2_000, 100 * 2 ** failures)));
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
    let failures = 0;
    while (!stopped) {
      const current = liveness;
      if (!current) {
        try {
          await register();
          failures = 0;
          log.info('registered again after a lost liveness session');
        } catch (error) {
          if (failures++ === 0) log.error({ err: error }, 'registering the worker failed; retrying');
          await sleep(Math.min(options.pollMs, 100 * 2 ** Math.min(failures, 5)));
        }
        continue;
      }
      const room = options.maxInFlight - inFlight;
      if (room <= 0) {
        await sleep(options.pollMs);
        continue;
      }
      let claimed: ClaimedSend[];
      const deadline = Date.now() + claimBudgetMs;
      try {
        claimed = await claimSends(db, { workerKey: current.key, limit: room, leaseMs, sendWindowMs });
        failures = 0;
      } catch (error) {
        if (failures++ === 0) log.error({ err: error }, 'claiming sends failed; retrying');
        await sleep(Math.min(options.pollMs, 100 * 2 ** Math.min(failures, 5)));
        continue;
      }
      if (claimed.length === 0) {
        await sleep(options.pollMs);
        continue;
      }
      inFlight += claimed.length;
      for (const send of claimed) {
        void attempt(send, current, deadline).then((result) => {
          unrecorded.push(result);
          void flush();
        });
      }
    }
  })();

  return {
    get workerKey() {
      return liveness?.key ?? firstKey;
    },
    async stop() {
      // A second stop (a test stopped the relay early, then its harness) has nothing left to do.
      if (stopped) return;
      stopped = true;
      clearInterval(livenessCheck);
      wake();
      await loop;
      while (inFlight > 0 && !(await isDbGone())) {
        await flush();
        if (inFlight > 0) await new Promise((resolve) => setTimeout(resolve, 10));
      }
      await unlisten().catch(() => {});
      await liveness?.session.release();
      liveness = null;
    },
  };
}
