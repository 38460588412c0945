import { describe, expect, it } from 'vitest';
import { DEFAULT_ALERT_RULES, validateAlertRules } from './alert-rules.ts';

describe('alert rules as data', () => {
  it('ships the five example rules, valid', () => {
    expect(validateAlertRules(DEFAULT_ALERT_RULES).ok).toBe(true);
    expect(DEFAULT_ALERT_RULES.rules.map((r) => r.kind)).toEqual(['patient_wait', 'delivery_failure_rate', 'outbox_oldest', 'webhook_silence', 'coordinator_over_capacity']);
  });

  it('fills defaults', () => {
    const result = validateAlertRules({ rules: [{ id: 'w', kind: 'patient_wait' }] });
    expect(result.ok && result.document.rules[0]).toMatchObject({ businessMinutes: 15, wallMinutes: 120, forMinutes: 0, repeatMinutes: 60, severity: 'warning', notify: [], enabled: true });
  });

  it('lists every problem at once', () => {
    const result = validateAlertRules({
      rules: [
        { id: 'Bad Id', kind: 'outbox_oldest', thresholdSeconds: 0, extra: 1 },
        { id: 'x', kind: 'patient_wait', notify: ['ghost'] },
        { id: 'x', kind: 'webhook_silence', factor: 0.5 },
      ],
      targets: { mail: { type: 'email', to: [] }, pager: { type: 'sms', to: '555' } },
    });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    const paths = result.errors.map((e) => e.path);
    expect(paths).toEqual(expect.arrayContaining(['rules.0.id', 'rules.0.thresholdSeconds', 'rules.2.factor', 'targets.mail.to', 'targets.pager.to']));
    // Cross-references are listed beside the shape errors, not after they are fixed.
    expect(result.errors).toEqual(expect.arrayContaining([
      { path: 'rules.1.notify.0', message: 'no target named ghost' },
      { path: 'rules.2.id', message: 'duplicate rule id x' },
    ]));
    expect(result.errors.some((e) => e.path === 'rules.0' && /extra/.test(e.message))).toBe(true);
  });
});
