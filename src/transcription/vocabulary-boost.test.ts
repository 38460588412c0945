import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { CARE_TEST_SENTENCES } from '../test/audio/care-sentences.ts';
import { DEFAULT_CARE_CORPUS, readCorpus } from './vocabulary-boost.ts';
import { normaliseWords } from './wer.ts';

describe('care corpus', () => {
  it('skips comments and blank lines and normalises words', () => {
    expect(readCorpus('# a comment\n\nCan I refill it, please?\n  # indented comment\n')).toEqual([['can', 'i', 'refill', 'it', 'please']]);
  });

  it('holds none of the held-out test sentences, so the measured gain is on unseen speech', async () => {
    const corpus = readCorpus(await readFile(DEFAULT_CARE_CORPUS, 'utf8')).map((words) => words.join(' '));
    const overlap = CARE_TEST_SENTENCES.map((sentence) => normaliseWords(sentence).join(' ')).filter((sentence) =>
      corpus.some((line) => line.includes(sentence)),
    );
    expect(overlap).toEqual([]);
    expect(corpus.length).toBeGreaterThan(150);
  });
});
