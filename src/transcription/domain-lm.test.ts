import { describe, expect, it } from 'vitest';
import { SENTENCE_END, trainWittenBell } from './domain-lm.ts';

const sentences = [
  ['i', 'need', 'a', 'refill'],
  ['i', 'need', 'an', 'appointment'],
  ['call', 'the', 'pharmacy'],
  ['i', 'called', 'the', 'pharmacy'],
];

describe('trainWittenBell', () => {
  const model = trainWittenBell(sentences);
  const predicted = [...model.vocabulary].filter((word) => word !== '<s>');

  it.each([[[]], [['<s>']], [['i']], [['i', 'need']], [['need', 'a']], [['unseen', 'words']], [['the', 'pharmacy']]])(
    'sums to one after history %j',
    (history) => {
      const total = predicted.reduce((sum, word) => sum + model.prob(history, word), 0);
      expect(total).toBeCloseTo(1, 10);
    },
  );

  it('prefers what followed a context in training, and never predicts unknown words or <s>', () => {
    expect(model.prob(['i', 'need'], 'a')).toBeGreaterThan(model.prob(['i', 'need'], 'pharmacy'));
    expect(model.prob(['the'], 'pharmacy')).toBeGreaterThan(0.5);
    expect(model.prob(['i'], 'lisinopril')).toBe(0);
    expect(model.prob([], '<s>')).toBe(0);
    expect(model.prob(['refill'], SENTENCE_END)).toBeGreaterThan(0.3);
  });

  it('lists the n-grams it saw, sentence boundaries included', () => {
    expect(model.seen[2]).toContainEqual(['<s>', 'i']);
    expect(model.seen[2]).toContainEqual(['pharmacy', '</s>']);
    expect(model.seen[3]).toContainEqual(['i', 'need', 'an']);
    expect(model.seen[3]).not.toContainEqual(['need', 'a', 'appointment']);
  });
});
