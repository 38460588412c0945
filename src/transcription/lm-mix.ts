import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { SENTENCE_START, type DomainModel } from './domain-lm.ts';
import { findBigram, logProb, type TrigramModel } from './sphinx-trie.ts';

/**
 * Writes, as ARPA text, the static linear interpolation
 *   P(w | h) = (1 - domainWeight) · P_generic(w | h) + domainWeight · P_domain(w | h)
 * over every n-gram explicit in either model, then recomputes each context's back-off weight so the merged
 * back-off model still sums to one (what SRILM's `ngram -mix-lm` does). Every generic n-gram survives, so
 * everyday speech keeps the generic model's knowledge; domain words and phrases gain probability, and words
 * the generic model lacks (lisinopril, metformin) enter it at all.
 */
export async function writeMixedArpa(
  generic: TrigramModel,
  domain: DomainModel,
  domainWeight: number,
  arpaPath: string,
): Promise<{ unigrams: number; bigrams: number; trigrams: number }> {
  if (!(domainWeight > 0 && domainWeight < 1)) throw new RangeError('domainWeight must be between 0 and 1');
  const genericWeight = 1 - domainWeight;

  // Merged vocabulary: generic ids first, domain-only words after them.
  const words = [...generic.words];
  const ids = new Map(generic.wordIds);
  for (const word of domain.vocabulary) {
    if (!ids.has(word)) {
      ids.set(word, words.length);
      words.push(word);
    }
  }
  const genericVocabulary = generic.words.length;
  const startId = ids.get(SENTENCE_START)!;
  const inDomain = new Uint8Array(words.length);
  for (const word of domain.vocabulary) inDomain[ids.get(word)!] = 1;

  /** P_generic with back-off; a word the generic model lacks has probability 0 and, as history, cuts the history there. */
  const genericProb = (history: readonly number[], word: number): number => {
    if (word >= genericVocabulary) return 0;
    let cut = history.length;
    while (cut > 0 && history[cut - 1]! < genericVocabulary) cut--;
    return 10 ** logProb(generic, history.slice(cut), word);
  };
  const domainProb = (history: readonly number[], word: number): number =>
    inDomain[word] ? domain.prob(history.map((id) => words[id]!), words[word]!) : 0;
  const mix = (history: readonly number[], word: number): number =>
    genericWeight * genericProb(history, word) + domainWeight * domainProb(history, word);

  // Unigrams.
  const unigramProb = new Float64Array(words.length);
  for (let w = 0; w < words.length; w++) unigramProb[w] = w === startId ? 0 : mix([], w);

  // Bigrams: the generic ones in trie order, then those only the domain model has, then contexts of generic
  // trigrams that a pruned generic model left out (a back-off weight needs an entry to live on).
  const genericBigrams = generic.bigramContext.length;
  const extraBigrams: Array<[number, number]> = [];
  const bigramIndex = new Map<string, number>();
  const indexBigram = (c: number, w: number): number => {
    const key = `${c} ${w}`;
    let index = bigramIndex.get(key);
    if (index === undefined) {
      index = c < genericVocabulary && w < genericVocabulary ? findBigram(generic, c, w) : -1;
      if (index < 0) {
        index = genericBigrams + extraBigrams.length;
        extraBigrams.push([c, w]);
      }
      bigramIndex.set(key, index);
    }
    return index;
  };
  for (const [context, word] of domain.seen[2] as Array<[string, string]>) indexBigram(ids.get(context)!, ids.get(word)!);

  const genericTrigrams = generic.trigramFirst.length;
  const domainOnlyTrigrams: Array<[number, number, number]> = [];
  for (const [a, b, c] of domain.seen[3] as Array<[string, string, string]>) {
    const ia = ids.get(a)!;
    const lower = indexBigram(ids.get(b)!, ids.get(c)!);
    const existing = lower < genericBigrams && ia < genericVocabulary ? findTrigramUnder(generic, lower, ia) : -1;
    if (existing < 0) domainOnlyTrigrams.push([ia, ids.get(b)!, ids.get(c)!]);
  }
  const trigramCount = genericTrigrams + domainOnlyTrigrams.length;
  const trigramContext = new Uint32Array(trigramCount);
  const trigramLower = new Uint32Array(trigramCount);
  for (let j = 0; j < genericTrigrams; j++) {
    if ((j & 0xffff) === 0) await yieldToEventLoop();
    const lower = generic.trigramBigram[j]!;
    const first = generic.trigramFirst[j]!;
    const context = generic.bigramContext[lower]!;
    trigramLower[j] = lower;
    const found = findBigram(generic, first, context);
    trigramContext[j] = found >= 0 ? found : indexBigram(first, context);
  }
  for (let j = genericTrigrams; j < trigramCount; j++) {
    const [a, b, c] = domainOnlyTrigrams[j - genericTrigrams]!;
    trigramContext[j] = indexBigram(a, b);
    trigramLower[j] = indexBigram(b, c);
  }

  const bigramCount = genericBigrams + extraBigrams.length;
  const bigramPair = (i: number): [number, number] =>
    i < genericBigrams ? [generic.bigramContext[i]!, generic.bigramPredicted[i]!] : extraBigrams[i - genericBigrams]!;
  const bigramProb = new Float64Array(bigramCount);
  const unigramNumerator = new Float64Array(words.length);
  const unigramDenominator = new Float64Array(words.length);
  const hasSuccessor = new Uint8Array(words.length);
  for (let i = 0; i < bigramCount; i++) {
    if ((i & 0xffff) === 0) await yieldToEventLoop();
    const [c, w] = bigramPair(i);
    const p =
      i < genericBigrams
        ? genericWeight * 10 ** generic.bigramLogProb[i]! + domainWeight * domainProb([c], w)
        : mix([c], w);
    bigramProb[i] = p;
    unigramNumerator[c] = unigramNumerator[c]! + p;
    unigramDenominator[c] = unigramDenominator[c]! + unigramProb[w]!;
    hasSuccessor[c] = 1;
  }
  const unigramBackoff = new Float64Array(words.length);
  for (let w = 0; w < words.length; w++) {
    if (hasSuccessor[w]) unigramBackoff[w] = backoffWeight(unigramNumerator[w]!, unigramDenominator[w]!);
  }

  const trigramProb = new Float64Array(trigramCount);
  const contextNumerator = new Float64Array(bigramCount);
  const contextDenominator = new Float64Array(bigramCount);
  for (let j = 0; j < trigramCount; j++) {
    if ((j & 0xffff) === 0) await yieldToEventLoop();
    const context = trigramContext[j]!;
    const lower = trigramLower[j]!;
    const [a, b] = bigramPair(context);
    const c = bigramPair(lower)[1];
    const p =
      j < genericTrigrams
        ? genericWeight * 10 ** generic.trigramLogProb[j]! + domainWeight * domainProb([a, b], c)
        : mix([a, b], c);
    trigramProb[j] = p;
    contextNumerator[context] = contextNumerator[context]! + p;
    contextDenominator[context] = contextDenominator[context]! + bigramProb[lower]!;
  }
  const bigramBackoff = new Float64Array(bigramCount);
  for (let i = 0; i < bigramCount; i++) {
    if (contextNumerator[i]! > 0) bigramBackoff[i] = backoffWeight(contextNumerator[i]!, contextDenominator[i]!);
  }

  const out = createWriteStream(arpaPath);
  const lines: string[] = [];
  const flush = async (force = false): Promise<void> => {
    if (lines.length < 20_000 && !force) return;
    const chunk = lines.join('\n') + '\n';
    lines.length = 0;
    if (!out.write(chunk)) await once(out, 'drain');
  };
  lines.push('\\data\\', `ngram 1=${words.length}`, `ngram 2=${bigramCount}`, `ngram 3=${trigramCount}`, '', '\\1-grams:');
  for (let w = 0; w < words.length; w++) {
    const logP = w === startId ? '-99.0000' : log10(unigramProb[w]!);
    lines.push(`${logP}\t${words[w]}\t${hasSuccessor[w] ? log10(unigramBackoff[w]!) : '0.0000'}`);
    await flush();
  }
  lines.push('', '\\2-grams:');
  for (let i = 0; i < bigramCount; i++) {
    const [c, w] = bigramPair(i);
    lines.push(`${log10(bigramProb[i]!)}\t${words[c]} ${words[w]}\t${contextNumerator[i]! > 0 ? log10(bigramBackoff[i]!) : '0.0000'}`);
    await flush();
  }
  lines.push('', '\\3-grams:');
  for (let j = 0; j < trigramCount; j++) {
    const [a, b] = bigramPair(trigramContext[j]!);
    const c = bigramPair(trigramLower[j]!)[1];
    lines.push(`${log10(trigramProb[j]!)}\t${words[a]} ${words[b]} ${words[c]}`);
    await flush();
  }
  lines.push('', '\\end\\');
  await flush(true);
  out.end();
  await once(out, 'finish');
  return { unigrams: words.length, bigrams: bigramCount, trigrams: trigramCount };
}

/** Katz back-off weight: the mass left by the explicit successors, spread over the lower order's remaining mass. */
function backoffWeight(explicitMass: number, lowerOrderMass: number): number {
  const left = Math.max(1 - explicitMass, 1e-7);
  const lowerLeft = Math.max(1 - lowerOrderMass, 1e-7);
  return left / lowerLeft;
}

function log10(p: number): string {
  return p > 0 ? Math.max(Math.log10(p), -99).toFixed(6) : '-99.000000';
}

function findTrigramUnder(model: TrigramModel, bigram: number, first: number): number {
  let low = model.bigramChildStart[bigram]!;
  let high = model.bigramChildStart[bigram + 1]! - 1;
  while (low <= high) {
    const middle = (low + high) >>> 1;
    const value = model.trigramFirst[middle]!;
    if (value === first) return middle;
    if (value < first) low = middle + 1;
    else high = middle - 1;
  }
  return -1;
}
