/** Lower-cases, drops punctuation (keeping in-word apostrophes and hyphens as word breaks) and splits on whitespace. */
export function normaliseWords(text: string): string[] {
  return text
    .toLowerCase()
    .replace(/[’‘]/g, "'")
    .replace(/[^a-z0-9'\s-]+/g, ' ')
    .replace(/-/g, ' ')
    .split(/\s+/)
    .map((word) => word.replace(/^'+|'+$/g, ''))
    .filter((word) => word.length > 0);
}

export interface WordErrors {
  substitutions: number;
  deletions: number;
  insertions: number;
  /** Words in the reference: the denominator of the error rate. */
  referenceWords: number;
}

/** Levenshtein alignment of hypothesis against reference words, counting each kind of edit. */
export function countWordErrors(reference: string, hypothesis: string): WordErrors {
  const ref = normaliseWords(reference);
  const hyp = normaliseWords(hypothesis);
  // cost[j] holds the cheapest alignment of ref[0..i) with hyp[0..j); ties prefer substitutions, as sclite does.
  type Cell = { cost: number; s: number; d: number; n: number };
  let previous: Cell[] = Array.from({ length: hyp.length + 1 }, (_, j) => ({ cost: j, s: 0, d: 0, n: j }));
  for (let i = 1; i <= ref.length; i++) {
    const current: Cell[] = [{ cost: i, s: 0, d: i, n: 0 }];
    for (let j = 1; j <= hyp.length; j++) {
      const diagonal = previous[j - 1]!;
      const up = previous[j]!;
      const left = current[j - 1]!;
      const same = ref[i - 1] === hyp[j - 1];
      const options: Cell[] = [
        same ? { ...diagonal } : { cost: diagonal.cost + 1, s: diagonal.s + 1, d: diagonal.d, n: diagonal.n },
        { cost: up.cost + 1, s: up.s, d: up.d + 1, n: up.n },
        { cost: left.cost + 1, s: left.s, d: left.d, n: left.n + 1 },
      ];
      current.push(options.reduce((best, option) => (option.cost < best.cost ? option : best)));
    }
    previous = current;
  }
  const last = previous[hyp.length]!;
  return { substitutions: last.s, deletions: last.d, insertions: last.n, referenceWords: ref.length };
}

/**
 * Word error rate: (substitutions + deletions + insertions) / reference words, over normalised words.
 * An empty reference gives 0 for an empty hypothesis and 1 otherwise, so the rate stays finite.
 */
export function wordErrorRate(reference: string, hypothesis: string): number {
  return corpusWordErrorRate([{ reference, hypothesis }]);
}

/** Pools the edits of many utterances before dividing, so long utterances weigh more, as in sclite and jiwer. */
export function corpusWordErrorRate(pairs: ReadonlyArray<{ reference: string; hypothesis: string }>): number {
  let edits = 0;
  let words = 0;
  for (const { reference, hypothesis } of pairs) {
    const errors = countWordErrors(reference, hypothesis);
    edits += errors.substitutions + errors.deletions + errors.insertions;
    words += errors.referenceWords;
  }
  if (words === 0) return edits === 0 ? 0 : 1;
  return edits / words;
}
