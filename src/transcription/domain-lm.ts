export const SENTENCE_START = '<s>';
export const SENTENCE_END = '</s>';

/**
 * An interpolated Witten-Bell trigram model over a closed vocabulary (the words of its training sentences).
 * Witten-Bell suits a corpus of a few hundred sentences: it needs no held-out data to set discounts, and
 * a context seen with many different next words lends more weight to its lower order.
 */
export interface DomainModel {
  vocabulary: ReadonlySet<string>;
  /** P(word | history), history oldest first; 0 for a word outside the vocabulary. Sums to 1 over vocabulary + </s>. */
  prob(history: readonly string[], word: string): number;
  /** Every n-gram seen in training, as word arrays, by order (1-based index: bigrams at [2], trigrams at [3]). */
  seen: { 2: string[][]; 3: string[][] };
}

interface ContextStats {
  total: number;
  next: Map<string, number>;
}

export function trainWittenBell(sentences: ReadonlyArray<readonly string[]>): DomainModel {
  const unigrams = new Map<string, number>();
  let unigramTotal = 0;
  const bigrams = new Map<string, ContextStats>();
  const trigrams = new Map<string, ContextStats>();
  const count = (table: Map<string, ContextStats>, context: string, word: string): void => {
    let stats = table.get(context);
    if (!stats) table.set(context, (stats = { total: 0, next: new Map() }));
    stats.total++;
    stats.next.set(word, (stats.next.get(word) ?? 0) + 1);
  };

  for (const sentence of sentences) {
    if (sentence.length === 0) continue;
    const tokens = [SENTENCE_START, ...sentence, SENTENCE_END];
    for (let i = 1; i < tokens.length; i++) {
      const word = tokens[i]!;
      unigrams.set(word, (unigrams.get(word) ?? 0) + 1);
      unigramTotal++;
      count(bigrams, tokens[i - 1]!, word);
      if (i >= 2) count(trigrams, `${tokens[i - 2]} ${tokens[i - 1]}`, word);
    }
  }

  const p1 = (word: string): number => (unigrams.get(word) ?? 0) / unigramTotal;
  const interpolate = (stats: ContextStats | undefined, word: string, lower: number): number => {
    if (!stats) return lower;
    const distinct = stats.next.size;
    return ((stats.next.get(word) ?? 0) + distinct * lower) / (stats.total + distinct);
  };
  const p2 = (context: string, word: string): number => interpolate(bigrams.get(context), word, p1(word));
  const prob = (history: readonly string[], word: string): number => {
    if (!unigrams.has(word)) return 0;
    const context = history[history.length - 1];
    if (context === undefined) return p1(word);
    const lower = p2(context, word);
    const first = history[history.length - 2];
    if (first === undefined) return lower;
    return interpolate(trigrams.get(`${first} ${context}`), word, lower);
  };

  const list = (table: Map<string, ContextStats>): string[][] =>
    [...table].flatMap(([context, stats]) => [...stats.next.keys()].map((word) => [...context.split(' '), word]));
  const vocabulary = new Set(unigrams.keys());
  vocabulary.add(SENTENCE_START);
  return { vocabulary, prob, seen: { 2: list(bigrams), 3: list(trigrams) } };
}
