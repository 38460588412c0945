import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createOpsMetrics } from './metrics.ts';

const exported = new Set<string>();
for (const metric of await createOpsMetrics().registry.getMetricsAsJSON()) {
  exported.add(metric.name);
  if (String(metric.type) === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) exported.add(metric.name + suffix);
}
const referenced = (text: string) => new Set(text.match(/switchboard_[a-z0-9_]+/g) ?? []);

describe('shipped Prometheus rules and Grafana dashboard', () => {
  it('alerts.yml uses only metrics we export', () => {
    const names = referenced(readFileSync(new URL('../../deploy/prometheus/alerts.yml', import.meta.url), 'utf8'));
    expect(names.size).toBeGreaterThan(5);
    expect([...names].filter((n) => !exported.has(n))).toEqual([]);
  });

  it('the dashboard parses and every panel queries metrics we export', () => {
    const dashboard = JSON.parse(readFileSync(new URL('../../deploy/grafana/switchboard.json', import.meta.url), 'utf8'));
    const exprs: string[] = dashboard.panels.flatMap((p: { targets: Array<{ expr: string }> }) => p.targets.map((t) => t.expr));
    expect(exprs.length).toBeGreaterThan(10);
    const names = referenced(exprs.join('\n'));
    expect([...names].filter((n) => !exported.has(n))).toEqual([]);
    // Every metric we export is on the dashboard somewhere.
    const base = [...exported].filter((n) => !/_(bucket|sum|count)$/.test(n) || !exported.has(n.replace(/_(bucket|sum|count)$/, '')));
    expect(base.filter((n) => ![...names].some((used) => used.startsWith(n)))).toEqual([]);
  });
});
