import { describe, expect, it } from 'vitest';
import { chooseReplyIdentity, type ReachableIdentity } from './reply-channel.ts';

const HOUR = 3_600_000;
const NOW = new Date('2026-06-10T12:00:00Z');
const ago = (hours: number) => new Date(NOW.getTime() - hours * HOUR);
const rules = { now: () => NOW };
const identity = (id: string, channel: ReachableIdentity['channel'], lastHoursAgo: number | null, extra: Partial<ReachableIdentity> = {}): ReachableIdentity => ({
  id,
  channel,
  address: `${channel}-addr`,
  lastInboundAt: lastHoursAgo === null ? null : ago(lastHoursAgo),
  createdAt: ago(1000),
  ...extra,
});

describe('reply channel with fallback', () => {
  it('takes the last-used medium when it can deliver', () => {
    const choice = chooseReplyIdentity([identity('s', 'sms', 5), identity('m', 'messenger', 1)], rules);
    expect(choice).toMatchObject({ ok: true, identity: { id: 'm' }, reason: 'last used messenger', skipped: [] });
  });

  it('Messenger is usable up to 7 days (HUMAN_AGENT), then falls back to the next most recent', () => {
    expect(chooseReplyIdentity([identity('s', 'sms', 200), identity('m', 'messenger', 6 * 24)], rules)).toMatchObject({ identity: { id: 'm' } });
    const closed = chooseReplyIdentity([identity('s', 'sms', 200), identity('m', 'messenger', 7 * 24 + 1)], rules);
    expect(closed).toMatchObject({ ok: true, identity: { id: 's' }, skipped: [{ identityId: 'm' }] });
    expect(closed.ok && closed.reason).toBe('fell back to sms (next most recently used): messenger: outside its 7 days window (last message 7 days ago)');
  });

  it('WhatsApp closes after 24 h; with a template it is the last resort, after every channel that can send the text', () => {
    const ids = [identity('s', 'sms', 100, { optedOut: true }), identity('w', 'whatsapp', 30)];
    expect(chooseReplyIdentity(ids, rules)).toMatchObject({ ok: false, reason: expect.stringMatching(/whatsapp: outside its 24 h window.*sms sms-addr opted out/) });
    const withTemplate = chooseReplyIdentity(ids, { ...rules, templateChannels: ['whatsapp'] });
    expect(withTemplate).toMatchObject({ ok: true, identity: { id: 'w' }, reason: expect.stringContaining('approved template') });
    const smsOpen = chooseReplyIdentity([identity('s', 'sms', 100), identity('w', 'whatsapp', 30)], { ...rules, templateChannels: ['whatsapp'] });
    expect(smsOpen).toMatchObject({ identity: { id: 's' } });
  });

  it('skips opted-out, unreachable and already-tried identities, and says why when none is left', () => {
    const ids = [identity('a', 'sms', 1, { optedOut: true }), identity('b', 'messenger', 2, { unreachableReason: '551: unavailable' }), identity('c', 'sms', 3)];
    expect(chooseReplyIdentity(ids, rules)).toMatchObject({ identity: { id: 'c' } });
    const none = chooseReplyIdentity(ids, rules, new Set(['c']));
    expect(none).toMatchObject({ ok: false });
    expect(!none.ok && none.reason).toMatch(/opted out.*unreachable: 551.*already failed for this message/);
  });

  it('without rules (no clock) windows are not checked but consent still is', () => {
    expect(chooseReplyIdentity([identity('m', 'messenger', 10_000)])).toMatchObject({ identity: { id: 'm' } });
    expect(chooseReplyIdentity([identity('m', 'messenger', 1, { optedOut: true })])).toMatchObject({ ok: false });
  });

  it('a window counts from the last inbound; never written from means closed', () => {
    expect(chooseReplyIdentity([identity('w', 'whatsapp', null), identity('s', 'sms', null, { createdAt: ago(2000) })], rules)).toMatchObject({ identity: { id: 's' } });
  });
});
