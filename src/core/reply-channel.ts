import type { Channel } from './types.ts';

export interface ReachableIdentity {
  id: string;
  channel: Channel;
  address: string;
  /** When the patient last wrote from this identity; null if never (e.g. linked by a coordinator). */
  lastInboundAt: Date | null;
  createdAt: Date;
}

export type ReplyChannelChoice =
  | { ok: true; identity: ReachableIdentity; reason: string }
  | { ok: false; reason: string };

/**
 * A reply goes out on the medium the patient last wrote from (requirement 2). With no inbound at all,
 * the most recently added identity is the best guess we have.
 */
export function chooseReplyIdentity(identities: readonly ReachableIdentity[]): ReplyChannelChoice {
  if (identities.length === 0) return { ok: false, reason: 'patient has no channel identity to reply on' };
  const byRecency = [...identities].sort(
    (a, b) =>
      (b.lastInboundAt?.getTime() ?? -Infinity) - (a.lastInboundAt?.getTime() ?? -Infinity) ||
      b.createdAt.getTime() - a.createdAt.getTime() ||
      a.id.localeCompare(b.id),
  );
  const chosen = byRecency[0]!;
  return {
    ok: true,
    identity: chosen,
    reason: chosen.lastInboundAt ? `last used ${chosen.channel}` : `no inbound yet; newest identity is ${chosen.channel}`,
  };
}
