import type { Channel } from './types.ts';

export interface ReachableIdentity {
  id: string;
  channel: Channel;
  address: string;
  /** When the patient last wrote from this identity; null if never (e.g. linked by a coordinator). */
  lastInboundAt: Date | null;
  createdAt: Date;
  /** The patient opted this identity out (STOP …): nothing may be sent to it. */
  optedOut?: boolean;
  /** A provider said this identity cannot be reached (invalid number, user unavailable …); null when fine. */
  unreachableReason?: string | null;
}

const HOUR_MS = 3_600_000;

/**
 * Channels whose provider allows a free-form reply only for a while after the person's last message:
 * Messenger up to 7 days (24 h RESPONSE, then MESSAGE_TAG HUMAN_AGENT), WhatsApp 24 hours. Channel policy,
 * not provider detail: any provider of these channels is bound by Meta's rules.
 */
export const REPLY_WINDOWS_MS: Partial<Record<Channel, number>> = {
  messenger: 7 * 24 * HOUR_MS,
  whatsapp: 24 * HOUR_MS,
};

export interface ReplyRules {
  now: () => Date;
  /**
   * Channels that can still reach a patient outside their window with a pre-approved template (WhatsApp with
   * WHATSAPP_TEMPLATE_NAME). Such an identity is a last resort: the patient gets the template, not the text.
   */
  templateChannels?: readonly Channel[];
}

export interface SkippedIdentity {
  identityId: string;
  channel: Channel;
  reason: string;
}

export type ReplyChannelChoice =
  | { ok: true; identity: ReachableIdentity; reason: string; skipped: SkippedIdentity[] }
  | { ok: false; reason: string; skipped: SkippedIdentity[] };

function byRecency(a: ReachableIdentity, b: ReachableIdentity): number {
  return (
    (b.lastInboundAt?.getTime() ?? -Infinity) - (a.lastInboundAt?.getTime() ?? -Infinity) ||
    b.createdAt.getTime() - a.createdAt.getTime() ||
    a.id.localeCompare(b.id)
  );
}

const hoursAgo = (ms: number) => (ms >= 48 * HOUR_MS ? `${Math.floor(ms / (24 * HOUR_MS))} days` : `${Math.floor(ms / HOUR_MS)} h`);

/** Why `identity` cannot carry a reply now, or null when it can. */
export function whyUndeliverable(identity: ReachableIdentity, rules?: ReplyRules): string | null {
  if (identity.optedOut) return `${identity.channel} ${identity.address} opted out`;
  if (identity.unreachableReason) return `${identity.channel} ${identity.address} unreachable: ${identity.unreachableReason}`;
  const windowMs = REPLY_WINDOWS_MS[identity.channel];
  if (rules && windowMs !== undefined) {
    if (!identity.lastInboundAt) return `${identity.channel}: the patient has never written here, so its messaging window is closed`;
    const ageMs = rules.now().getTime() - identity.lastInboundAt.getTime();
    if (ageMs >= windowMs) return `${identity.channel}: outside its ${hoursAgo(windowMs)} window (last message ${hoursAgo(ageMs)} ago)`;
  }
  return null;
}

/**
 * Requirement 2 with fallback: a reply goes out on the medium the patient last wrote from; when that one
 * cannot deliver now (opted out, unreachable, outside its messaging window) it falls back to the next most
 * recently used identity that can. With no inbound at all, the most recently added identity is the best guess.
 * A template-only identity (see ReplyRules) is taken only when nothing else can deliver. `exclude` names
 * identities already tried for this message. Without `rules` no window is checked (no clock).
 */
export function chooseReplyIdentity(identities: readonly ReachableIdentity[], rules?: ReplyRules, exclude: ReadonlySet<string> = new Set()): ReplyChannelChoice {
  if (identities.length === 0) return { ok: false, reason: 'patient has no channel identity to reply on', skipped: [] };
  const ordered = [...identities].sort(byRecency);
  const skipped: SkippedIdentity[] = [];
  const templateOnly: ReachableIdentity[] = [];
  for (const [index, identity] of ordered.entries()) {
    const reason = exclude.has(identity.id) ? `${identity.channel} ${identity.address} already failed for this message` : whyUndeliverable(identity, rules);
    if (reason === null) {
      const base = identity.lastInboundAt ? `last used ${identity.channel}` : `no inbound yet; newest identity is ${identity.channel}`;
      const fallback = index === 0 ? base : `fell back to ${identity.channel} (${identity.lastInboundAt ? 'next most recently used' : 'never written from'}): ${skipped.map((s) => s.reason).join('; ')}`;
      return { ok: true, identity, reason: fallback, skipped };
    }
    skipped.push({ identityId: identity.id, channel: identity.channel, reason });
    const windowOnly = !exclude.has(identity.id) && !identity.optedOut && !identity.unreachableReason;
    if (windowOnly && rules?.templateChannels?.includes(identity.channel)) templateOnly.push(identity);
  }
  const template = templateOnly[0];
  if (template) {
    return {
      ok: true,
      identity: template,
      reason: `only ${template.channel} can reach the patient, with its approved template instead of this text: ${skipped.map((s) => s.reason).join('; ')}`,
      skipped,
    };
  }
  return { ok: false, reason: `no channel can deliver now: ${skipped.map((s) => s.reason).join('; ')}`, skipped };
}
