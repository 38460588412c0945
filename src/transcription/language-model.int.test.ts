import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertTranscriptionToolsInstalled } from '../test/audio/fixtures.ts';
import { SENTENCE_START, trainWittenBell, type DomainModel } from './domain-lm.ts';
import { writeMixedArpa } from './lm-mix.ts';
import { runProcess } from './run-process.ts';
import { logProb, readSphinxTrie, type TrigramModel } from './sphinx-trie.ts';

// Needs sphinx_lm_convert (sphinxbase-utils) to compile ARPA text into the trie binary the decoder loads.

const GENERIC_SENTENCES = [
  'the cat sat on the mat',
  'the dog sat on the log',
  'a cat saw a dog',
  'the dog saw the cat on the mat',
].map((line) => line.split(' '));
const DOMAIN_SENTENCES = ['refill the lisinopril', 'the nurse saw the dog', 'refill the prescription'].map((line) => line.split(' '));

let dir: string;
beforeAll(async () => {
  assertTranscriptionToolsInstalled();
  dir = await mkdtemp(join(tmpdir(), 'lm-test-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** ARPA text for a closed-vocabulary model: its seen n-grams explicit, back-off weights that make it sum to one. */
function toArpa(model: DomainModel): string {
  const words = [...model.vocabulary];
  const predicted = words.filter((word) => word !== SENTENCE_START);
  const backoff = (history: string[], successors: string[]): number => {
    const explicit = successors.reduce((sum, word) => sum + model.prob(history, word), 0);
    const lower = successors.reduce((sum, word) => sum + model.prob(history.slice(1), word), 0);
    return (1 - explicit) / (1 - lower);
  };
  const successors = (ngrams: string[][], history: string[]): string[] =>
    ngrams.filter((ngram) => history.every((word, i) => ngram[i] === word)).map((ngram) => ngram[history.length]!);
  const fmt = (p: number): string => Math.log10(p).toFixed(6);
  const lines = ['\\data\\', `ngram 1=${words.length}`, `ngram 2=${model.seen[2].length}`, `ngram 3=${model.seen[3].length}`, '', '\\1-grams:'];
  for (const word of words) {
    const next = successors(model.seen[2], [word]);
    const p = word === SENTENCE_START ? '-99' : fmt(model.prob([], word));
    lines.push(`${p}\t${word}\t${next.length > 0 ? fmt(backoff([word], next)) : '0'}`);
  }
  lines.push('', '\\2-grams:');
  for (const [a, b] of model.seen[2] as Array<[string, string]>) {
    const next = successors(model.seen[3], [a, b]);
    lines.push(`${fmt(model.prob([a], b))}\t${a} ${b}\t${next.length > 0 ? fmt(backoff([a, b], next)) : '0'}`);
  }
  lines.push('', '\\3-grams:');
  for (const [a, b, c] of model.seen[3] as Array<[string, string, string]>) lines.push(`${fmt(model.prob([a, b], c))}\t${a} ${b} ${c}`);
  lines.push('', '\\end\\', '');
  expect(predicted.length).toBeGreaterThan(0);
  return lines.join('\n');
}

async function compile(arpaPath: string): Promise<TrigramModel> {
  const binPath = arpaPath.replace(/\.arpa$/, '.lm.bin');
  const result = await runProcess('sphinx_lm_convert', ['-i', arpaPath, '-ifmt', 'arpa', '-o', binPath]);
  expect(result.exitCode, result.stderr).toBe(0);
  return readSphinxTrie(binPath);
}

const ids = (model: TrigramModel, words: string[]): number[] => words.map((word) => model.wordIds.get(word) ?? -1);
const sumAfter = (model: TrigramModel, history: string[]): number =>
  model.words.reduce((sum, word, id) => (word === SENTENCE_START ? sum : sum + 10 ** logProb(model, ids(model, history), id)), 0);

describe('readSphinxTrie', () => {
  it('reads back what sphinx_lm_convert compiled, n-gram for n-gram', async () => {
    const source = trainWittenBell(GENERIC_SENTENCES);
    await writeFile(join(dir, 'generic.arpa'), toArpa(source));
    const model = await compile(join(dir, 'generic.arpa'));
    expect(new Set(model.words)).toEqual(source.vocabulary);
    for (const [a, b, c] of source.seen[3] as Array<[string, string, string]>) {
      expect(logProb(model, ids(model, [a, b]), model.wordIds.get(c)!)).toBeCloseTo(Math.log10(source.prob([a, b], c)), 3);
    }
    for (const [a, b] of source.seen[2] as Array<[string, string]>) {
      expect(logProb(model, ids(model, [a]), model.wordIds.get(b)!)).toBeCloseTo(Math.log10(source.prob([a], b)), 3);
    }
    // Unseen n-grams go through the back-off weights, which must reproduce the interpolated model too.
    expect(logProb(model, ids(model, ['mat', 'on']), model.wordIds.get('dog')!)).toBeCloseTo(Math.log10(source.prob(['mat', 'on'], 'dog')), 3);
  });

  it('reads the en-us model Debian ships, whose distributions sum to one', async () => {
    const model = await readSphinxTrie('/usr/share/pocketsphinx/model/en-us/en-us.lm.bin');
    expect(model.words).toHaveLength(72547);
    expect(model.trigramFirst.length).toBeGreaterThan(1_000_000);
    for (const history of [[], ['<s>'], ['the'], ['my', 'blood']]) expect(sumAfter(model, history)).toBeCloseTo(1, 3);
  });
});

describe('writeMixedArpa', () => {
  it('interpolates both models on every explicit n-gram and still sums to one after any history', async () => {
    const source = trainWittenBell(GENERIC_SENTENCES);
    await writeFile(join(dir, 'g.arpa'), toArpa(source));
    const generic = await compile(join(dir, 'g.arpa'));
    const domain = trainWittenBell(DOMAIN_SENTENCES);

    const counts = await writeMixedArpa(generic, domain, 0.3, join(dir, 'mixed.arpa'));
    const mixed = await compile(join(dir, 'mixed.arpa'));
    expect(counts.unigrams).toBe(mixed.words.length);
    expect(mixed.wordIds.has('lisinopril')).toBe(true);

    const expected = (history: string[], word: string): number => 0.7 * source.prob(history, word) + 0.3 * domain.prob(history, word);
    expect(10 ** logProb(mixed, ids(mixed, ['the']), mixed.wordIds.get('cat')!)).toBeCloseTo(expected(['the'], 'cat'), 4);
    expect(10 ** logProb(mixed, ids(mixed, ['refill', 'the']), mixed.wordIds.get('lisinopril')!)).toBeCloseTo(
      0.3 * domain.prob(['refill', 'the'], 'lisinopril'),
      4,
    );
    expect(10 ** logProb(mixed, ids(mixed, ['saw', 'the']), mixed.wordIds.get('dog')!)).toBeCloseTo(expected(['saw', 'the'], 'dog'), 4);
    for (const history of [[], ['<s>'], ['the'], ['refill', 'the'], ['the', 'dog'], ['nurse', 'saw'], ['lisinopril']]) {
      expect(sumAfter(mixed, history)).toBeCloseTo(1, 4);
    }
  });
});
