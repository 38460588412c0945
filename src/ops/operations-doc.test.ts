import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { AlertRuleSchema, DEFAULT_ALERT_RULES } from './alert-rules.ts';

// docs/OPERATIONS.md names environment variables and alerts; this keeps it from drifting away from the code.
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const doc = readFileSync(join(ROOT, 'docs/OPERATIONS.md'), 'utf8');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') && !entry.name.includes('.test.') && !entry.name.includes('.chaos.') ? [path] : [];
  });
}

/** Variables the program reads: keys of the zod env schemas (a schema may start on the next line) (src/config.ts, src/transcription/config.ts) and process.env.X. */
const readVariables = new Set<string>();
for (const file of sourceFiles(join(ROOT, 'src'))) {
  const text = readFileSync(file, 'utf8');
  for (const match of text.matchAll(/^\s+([A-Z][A-Z0-9_]*): (?:z\b|optional|flag)/gm)) readVariables.add(match[1]!);
  for (const match of text.matchAll(/\bprocess\.env\.([A-Z][A-Z0-9_]*)/g)) readVariables.add(match[1]!);
}

/** Upper-case names with an underscore (DATA_DIR), and upper-case names assigned in examples (HOST=0.0.0.0). */
function namedVariables(text: string): Set<string> {
  const names = new Set<string>();
  for (const match of text.matchAll(/\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b/g)) names.add(match[0]);
  for (const match of text.matchAll(/\b([A-Z][A-Z0-9_]*)=/g)) names.add(match[1]!);
  return names;
}

describe('docs/OPERATIONS.md', () => {
  it('names only environment variables the program reads', () => {
    expect(readVariables.has('DATABASE_URL')).toBe(true);
    expect(readVariables.has('TRANSCRIBER_CACHE_DIR')).toBe(true);
    const named = namedVariables(doc);
    expect(named.size).toBeGreaterThan(20);
    expect([...named].filter((name) => !readVariables.has(name))).toEqual([]);
  });

  it('explains every Prometheus alert in deploy/prometheus/alerts.yml, and names no other', () => {
    const shipped = [...readFileSync(join(ROOT, 'deploy/prometheus/alerts.yml'), 'utf8').matchAll(/^\s*- alert: (\w+)/gm)].map((m) => m[1]!);
    expect(shipped.length).toBeGreaterThan(5);
    expect(shipped.filter((name) => !doc.includes(`### ${name}`))).toEqual([]);
    const mentioned = new Set(doc.match(/\bSwitchboard[A-Z]\w+/g) ?? []);
    expect([...mentioned].filter((name) => !shipped.includes(name))).toEqual([]);
  });

  it('explains every built-in alert rule kind and names the default rule ids', () => {
    const kinds = AlertRuleSchema.options.map((option) => option.shape.kind.value);
    expect(kinds.length).toBe(5);
    expect(kinds.filter((kind) => !doc.includes(`built-in \`${kind}\``))).toEqual([]);
    expect(DEFAULT_ALERT_RULES.rules.map((rule) => rule.id).filter((id) => !doc.includes(`id \`${id}\``))).toEqual([]);
  });
});
