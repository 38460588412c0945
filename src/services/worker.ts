import { startOutboxRelay, type OutboxRelay, type OutboxRelayOptions } from '../outbox/relay.ts';
import { startRoutingTimers, type RoutingTimers } from './routing-timers.ts';

/** The worker role: the outbox relay and routing's fallback timers; later also transcription and alert evaluation. */
export async function startWorker(
  options: OutboxRelayOptions & { routingTimerPollMs?: number; now?: () => Date },
): Promise<{ relay: OutboxRelay; routingTimers: RoutingTimers; stop(): Promise<void> }> {
  const relay = await startOutboxRelay(options);
  const routingTimers = startRoutingTimers({ db: options.db, logger: options.logger, pollMs: options.routingTimerPollMs ?? 5_000, now: options.now });
  return {
    relay,
    routingTimers,
    async stop() {
      await routingTimers.stop();
      await relay.stop();
    },
  };
}
