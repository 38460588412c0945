/**
 * `matches` patterns run on RE2 (re2js, a pure-JS port): matching takes time linear in the input whatever the
 * pattern, so a rule like `^(a|a)*$` cannot stall the event loop the way a backtracking engine (V8's RegExp) does.
 * The price is RE2's syntax: no backreferences and no lookaround; those are refused at validation by name.
 */
import { RE2JS } from 're2js';

/** Longer patterns are refused outright: a rule is a routing criterion, not a parser. */
export const MAX_PATTERN_LENGTH = 500;

export interface CompiledPattern {
  /** True when the pattern matches anywhere in `text` (like RegExp.test without the `g` flag). */
  test(text: string): boolean;
}

export type PatternResult = { ok: true; pattern: CompiledPattern } | { ok: false; problem: string };

/** Compiles a user-written pattern, or says why it may not be used. Case-insensitive unless `caseSensitive`. */
export function compilePattern(source: string, caseSensitive = false): PatternResult {
  if (source.length > MAX_PATTERN_LENGTH) return { ok: false, problem: `pattern longer than ${MAX_PATTERN_LENGTH} characters` };
  const unsupported = unsupportedFeature(source);
  if (unsupported) {
    return { ok: false, problem: `${unsupported} not supported: patterns run on a linear-time engine (RE2) that has no backtracking` };
  }
  try {
    // translateRegExp accepts JavaScript spellings RE2 lacks (`\u0041`, `(?<name>…)`, an unescaped `/`).
    const re = RE2JS.compile(RE2JS.translateRegExp(source), caseSensitive ? 0 : RE2JS.CASE_INSENSITIVE);
    return { ok: true, pattern: { test: (text) => re.test(text) } };
  } catch (error) {
    return { ok: false, problem: `invalid regular expression: ${error instanceof Error ? error.message : String(error)}` };
  }
}

/** Why a pattern may not be used, or null when it is fine. */
export function checkPattern(source: string): string | null {
  const result = compilePattern(source);
  return result.ok ? null : result.problem;
}

/**
 * Names the first JavaScript-only construct in `source` (RE2's own error for these is cryptic:
 * `(?<=` reads as "invalid named capture"). Skips escaped characters and character classes, where `(?=` is literal.
 */
function unsupportedFeature(source: string): string | null {
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === '\\') {
      const next = source[i + 1] ?? '';
      if (!inClass && /[1-9]/.test(next)) return `backreferences (\\${next}) are`;
      if (!inClass && next === 'k' && source[i + 2] === '<') return 'named backreferences (\\k<…>) are';
      i++;
    } else if (inClass) {
      if (c === ']') inClass = false;
    } else if (c === '[') {
      inClass = true;
      if (source[i + 1] === ']') i++; // `[]…]`: a leading `]` is literal
    } else if (c === '(' && source[i + 1] === '?') {
      const rest = source.slice(i + 2, i + 4);
      if (rest.startsWith('=') || rest.startsWith('!')) return 'lookahead (?= / ?!) is';
      if (rest === '<=' || rest === '<!') return 'lookbehind (?<= / ?<!) is';
    }
  }
  return null;
}
