import type { MessageStatus } from './types.ts';

/**
 * Providers report statuses out of order (Twilio says so: status callbacks "aren't guaranteed to be sent in
 * order"), so a status only ever moves forward. Terminal outcomes share a rank: once delivered, a late
 * `undelivered` or `sent` changes nothing; only `read` can follow `delivered`.
 */
const RANK: Record<MessageStatus, number> = {
  received: 0,
  pending: 0,
  sending: 1,
  // Nothing learnt from the provider yet, like sending: whatever a coordinator decides (sent, failed) is forward.
  uncertain: 1,
  queued: 2,
  sent: 3,
  delivered: 4,
  undelivered: 4,
  failed: 4,
  read: 5,
};

export function statusRank(status: MessageStatus): number {
  return RANK[status];
}

export function isForwardStatus(current: MessageStatus, next: MessageStatus): boolean {
  if (next === 'read') return current !== 'read' && current !== 'failed' && current !== 'undelivered';
  return RANK[next] > RANK[current];
}

export function isFailureStatus(status: MessageStatus): boolean {
  return status === 'failed' || status === 'undelivered';
}
