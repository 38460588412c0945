import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { interleaveLogs, type LogEntry } from './merge.ts';

const entry = (id: string, seq: number, atMs: number, kind: LogEntry['kind'] = 'message'): LogEntry => ({ kind, id, seq, at: new Date(atMs) });

describe('interleaveLogs', () => {
  it('interleaves two logs by time and numbers the result from 1', () => {
    const merged = interleaveLogs([entry('a1', 1, 10), entry('a2', 2, 30)], [entry('b1', 1, 20), entry('b2', 2, 40, 'event')]);
    expect(merged.map((e) => [e.id, e.newSeq, e.from])).toEqual([
      ['a1', 1, 'survivor'],
      ['b1', 2, 'absorbed'],
      ['a2', 3, 'survivor'],
      ['b2', 4, 'absorbed'],
    ]);
  });

  it('puts the survivor first on equal times', () => {
    expect(interleaveLogs([entry('a', 1, 5)], [entry('b', 1, 5)]).map((e) => e.id)).toEqual(['a', 'b']);
  });

  it('never reorders one log, even when its timestamps are not increasing', () => {
    // a2 was written by a transaction that started before a1's but took its seq later.
    const merged = interleaveLogs([entry('a1', 1, 50), entry('a2', 2, 10)], [entry('b1', 1, 20)]);
    expect(merged.map((e) => e.id)).toEqual(['b1', 'a1', 'a2']);
  });

  it('keeps every entry once and each log in seq order (property)', () => {
    const log = fc.array(fc.integer({ min: 0, max: 1000 }), { maxLength: 30 });
    fc.assert(
      fc.property(log, log, (aTimes, bTimes) => {
        const a = aTimes.map((t, i) => entry(`a${i}`, i + 1, t));
        const b = bTimes.map((t, i) => entry(`b${i}`, i + 1, t));
        const merged = interleaveLogs(a, b);
        expect(merged.map((e) => e.newSeq)).toEqual(merged.map((_, i) => i + 1));
        expect(merged.filter((e) => e.from === 'survivor').map((e) => e.id)).toEqual(a.map((e) => e.id));
        expect(merged.filter((e) => e.from === 'absorbed').map((e) => e.id)).toEqual(b.map((e) => e.id));
      }),
    );
  });
});
