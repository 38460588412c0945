import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// docs/SECURITY.md says which test proves each property, as `src/….test.ts` › “test name”. This keeps those
// references true: the file exists and holds a test of exactly that name, so renaming or deleting a test that
// the security argument rests on fails here until the document is updated.
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const doc = readFileSync(join(ROOT, 'docs/SECURITY.md'), 'utf8');

const CITATION = /`(src\/[^`\s]+\.test\.ts)` › “([^”]+)”/g;

/** The file's text with quote escapes undone, so `'team\'s'` in the source matches the title as written in the doc. */
function unescaped(path: string): string {
  return readFileSync(join(ROOT, path), 'utf8').replace(/\\(['"`\\])/g, '$1');
}

/** Whether `title` is a whole string literal in the file (a test's title, not a fragment of one). */
function hasTitle(source: string, title: string): boolean {
  return ["'", '"', '`'].some((quote) => source.includes(`${quote}${title}${quote}`));
}

describe('docs/SECURITY.md', () => {
  const citations = [...doc.matchAll(CITATION)].map((match) => ({ file: match[1]!, title: match[2]! }));

  it('names tests that exist, by their exact names', () => {
    // The threat model cites a few dozen tests; far fewer means the citation format broke, not that all is well.
    expect(citations.length).toBeGreaterThan(50);
    const missingFiles = [...new Set(citations.map((c) => c.file))].filter((file) => !existsSync(join(ROOT, file)));
    expect(missingFiles).toEqual([]);
    const missingTitles = citations.filter((c) => !hasTitle(unescaped(c.file), c.title)).map((c) => `${c.file} › ${c.title}`);
    expect(missingTitles).toEqual([]);
  });

  it('writes every citation in the checked form', () => {
    // A citation with other quotes or a missing backtick would escape the check above: every › must be one.
    expect(doc.split('›').length - 1).toBe(citations.length);
  });

  it('names only source files and directories that exist', () => {
    const paths = [...new Set([...doc.matchAll(/`(src\/[A-Za-z0-9_./-]+)`/g)].map((match) => match[1]!))];
    expect(paths.length).toBeGreaterThan(20);
    expect(paths.filter((path) => !existsSync(join(ROOT, path)))).toEqual([]);
  });
});
