import { describe, expect, it } from 'vitest';
import { corpusWordErrorRate, countWordErrors, normaliseWords, wordErrorRate } from './wer.ts';

describe('normaliseWords', () => {
  it('lower-cases, drops punctuation and splits hyphens', () => {
    expect(normaliseWords("Can I re-schedule my appointment, Doctor?  It's urgent!")).toEqual([
      'can', 'i', 're', 'schedule', 'my', 'appointment', 'doctor', "it's", 'urgent',
    ]);
  });

  it('treats curly apostrophes like straight ones and strips quoting apostrophes', () => {
    expect(normaliseWords('‘I don’t’')).toEqual(['i', "don't"]);
  });
});

describe('wordErrorRate', () => {
  it('is 0 for identical text, whatever the case and punctuation', () => {
    expect(wordErrorRate('I need a refill.', 'i need a refill')).toBe(0);
  });

  it('counts one substitution over the reference length', () => {
    expect(wordErrorRate('call the pharmacy today', 'call the farmacy today')).toBe(0.25);
    expect(countWordErrors('call the pharmacy today', 'call the farmacy today')).toEqual({
      substitutions: 1, deletions: 0, insertions: 0, referenceWords: 4,
    });
  });

  it('counts deletions and insertions separately', () => {
    expect(countWordErrors('refill my lisinopril prescription', 'refill lisinopril prescription please')).toEqual({
      substitutions: 0, deletions: 1, insertions: 1, referenceWords: 4,
    });
  });

  it('can exceed 1 when the hypothesis is mostly insertions', () => {
    expect(wordErrorRate('yes', 'yes yes yes')).toBe(2);
  });

  it('is 1 for an empty hypothesis and finite for an empty reference', () => {
    expect(wordErrorRate('see the nurse', '')).toBe(1);
    expect(wordErrorRate('', '')).toBe(0);
    expect(wordErrorRate('', 'noise')).toBe(1);
  });

  it('finds the minimum edit alignment, not a greedy one', () => {
    // Greedy left-to-right matching would pair the first "my"s and then pay for three edits.
    expect(countWordErrors('my doctor my nurse', 'doctor my nurse')).toEqual({
      substitutions: 0, deletions: 1, insertions: 0, referenceWords: 4,
    });
  });
});

describe('corpusWordErrorRate', () => {
  it('pools edits over words rather than averaging per-utterance rates', () => {
    const pairs = [
      { reference: 'a', hypothesis: 'b' }, // 1 edit / 1 word
      { reference: 'one two three four five six seven eight nine', hypothesis: 'one two three four five six seven eight nine' },
    ];
    expect(corpusWordErrorRate(pairs)).toBeCloseTo(1 / 10);
  });
});
