/** One entry of a patient's log (a message or an event), as a merge sees it. */
export interface LogEntry {
  kind: 'message' | 'event';
  id: string;
  seq: number;
  at: Date;
}

export interface PlacedEntry extends LogEntry {
  /** The entry's position in the merged log, from 1. */
  newSeq: number;
  from: 'survivor' | 'absorbed';
}

/**
 * Interleaves two patients' logs into one by time, keeping each log's own order exactly.
 *
 * A log's timestamps are transaction start times, so inside one log they are not always increasing in `seq`
 * (a transaction that started earlier may take its seq later). Sorting the union by time could therefore swap
 * two entries of the same log. A two-way merge that only ever compares the two heads cannot: each log is
 * consumed strictly in `seq` order. Ties go to the survivor.
 */
export function interleaveLogs(survivor: readonly LogEntry[], absorbed: readonly LogEntry[]): PlacedEntry[] {
  const a = [...survivor].sort((x, y) => x.seq - y.seq);
  const b = [...absorbed].sort((x, y) => x.seq - y.seq);
  const placed: PlacedEntry[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const takeSurvivor = j >= b.length || (i < a.length && a[i]!.at.getTime() <= b[j]!.at.getTime());
    const entry = takeSurvivor ? a[i++]! : b[j++]!;
    placed.push({ ...entry, newSeq: placed.length + 1, from: takeSurvivor ? 'survivor' : 'absorbed' });
  }
  return placed;
}
