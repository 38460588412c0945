import { startOutboxRelay, type OutboxRelay, type OutboxRelayOptions } from '../outbox/relay.ts';

/** The worker role: today the outbox relay; later also transcription and alert evaluation. */
export async function startWorker(options: OutboxRelayOptions): Promise<{ relay: OutboxRelay; stop(): Promise<void> }> {
  const relay = await startOutboxRelay(options);
  return { relay, stop: () => relay.stop() };
}
