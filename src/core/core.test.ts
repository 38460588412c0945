import { describe, expect, it } from 'vitest';
import { isForwardStatus } from './delivery-status.ts';
import { chooseReplyIdentity } from './reply-channel.ts';
import { nextRetryDelayMs } from './retry.ts';
import { pickLeastLoaded } from './assignment.ts';

describe('delivery status only moves forward', () => {
  it.each([
    ['pending', 'sending', true],
    ['sending', 'queued', true],
    ['queued', 'sent', true],
    ['sent', 'delivered', true],
    ['delivered', 'sent', false],
    ['delivered', 'queued', false],
    ['delivered', 'read', true],
    ['read', 'delivered', false],
    ['failed', 'sent', false],
    ['undelivered', 'delivered', false],
    ['undelivered', 'read', false],
    ['sent', 'undelivered', true],
    ['sent', 'sent', false],
    ['sending', 'uncertain', false],
    ['uncertain', 'sent', true],
    ['uncertain', 'delivered', true],
    ['uncertain', 'failed', true],
    ['delivered', 'uncertain', false],
  ] as const)('%s → %s is %s', (from, to, expected) => {
    expect(isForwardStatus(from, to)).toBe(expected);
  });
});

describe('reply channel', () => {
  const at = (iso: string) => new Date(iso);
  it('picks the identity the patient last wrote from', () => {
    const choice = chooseReplyIdentity([
      { id: 'a', channel: 'sms', address: '+15550000001', lastInboundAt: at('2026-01-01T10:00Z'), createdAt: at('2026-01-01T00:00Z') },
      { id: 'b', channel: 'messenger', address: 'psid', lastInboundAt: at('2026-01-01T11:00Z'), createdAt: at('2026-01-01T00:00Z') },
    ]);
    expect(choice.ok && choice.identity.id).toBe('b');
  });
  it('prefers any inbound identity over one never used', () => {
    const choice = chooseReplyIdentity([
      { id: 'a', channel: 'sms', address: '+15550000001', lastInboundAt: null, createdAt: at('2026-02-01T00:00Z') },
      { id: 'b', channel: 'sms', address: '+15550000002', lastInboundAt: at('2026-01-01T11:00Z'), createdAt: at('2026-01-01T00:00Z') },
    ]);
    expect(choice.ok && choice.identity.id).toBe('b');
  });
  it('says why when there is nothing to reply on', () => {
    expect(chooseReplyIdentity([])).toMatchObject({ ok: false, reason: expect.stringContaining('no channel identity') });
  });
});

describe('retry backoff', () => {
  it('grows exponentially under the cap and honours Retry-After', () => {
    const policy = { baseMs: 100, capMs: 1000 };
    expect(nextRetryDelayMs(1, policy, () => 0.999)).toBe(99);
    expect(nextRetryDelayMs(3, policy, () => 0.999)).toBe(399);
    expect(nextRetryDelayMs(10, policy, () => 0.999)).toBe(999);
    expect(nextRetryDelayMs(1, policy, () => 0, 2500)).toBe(2500);
  });
});

describe('least-loaded assignment', () => {
  it('skips unavailable coordinators and breaks ties by id', () => {
    expect(
      pickLeastLoaded([
        { coordinatorId: 'c', assignedPatients: 1, isAvailable: true },
        { coordinatorId: 'b', assignedPatients: 1, isAvailable: true },
        { coordinatorId: 'a', assignedPatients: 0, isAvailable: false },
      ]),
    ).toBe('b');
    expect(pickLeastLoaded([])).toBeNull();
  });
});
