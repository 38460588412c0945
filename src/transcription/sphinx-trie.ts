import { readFile } from 'node:fs/promises';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';

/**
 * A trigram language model read from CMU Sphinx's "Trie Language Model" binary (the en-us.lm.bin that Debian's
 * pocketsphinx-en-us ships). Debian 12's sphinx_lm_convert cannot turn that file back into ARPA text: it asserts
 * on a header count that disagrees with the trie (cmusphinx/sphinxbase#89), so we read the trie ourselves.
 *
 * Layout, from sphinxbase src/libsphinxbase/lm/ngram_model_trie.c, lm_trie.c and lm_trie_quant.c:
 *   "Trie Language Model" | u8 order | u32 counts[order]
 *   i32 quant-type | f32 tables: per middle order 2^16 prob + 2^16 backoff bins, then 2^16 longest-prob bins
 *   unigrams[counts[0] + 1] of { f32 prob, f32 backoff, u32 next }   (next: first child in the bigram array)
 *   bit-packed bigram array: per entry word | 16-bit backoff bin | 16-bit prob bin | next (first trigram child)
 *   bit-packed trigram array: per entry word | 16-bit prob bin
 *   i32 byte length | NUL-separated word strings
 * The trie is reversed: a unigram's children are the words *before* it, so bigram entry (b) under unigram c is
 * the ARPA bigram "b c", and trigram entry (a) under it is "a b c". Values are log base 1.0001; we keep log10.
 */
export interface TrigramModel {
  words: string[];
  wordIds: Map<string, number>;
  /** log10 P(w) and log10 backoff(w), by word id. */
  unigramLogProb: Float32Array;
  unigramLogBackoff: Float32Array;
  /** Bigram "context predicted": entries [unigramChildStart[p], unigramChildStart[p + 1]) have predicted word p. */
  unigramChildStart: Uint32Array;
  bigramContext: Uint32Array;
  bigramPredicted: Uint32Array;
  bigramLogProb: Float32Array;
  bigramLogBackoff: Float32Array;
  /** Trigram "first context predicted" hangs under bigram "context predicted": entries [bigramChildStart[i], bigramChildStart[i + 1]). */
  bigramChildStart: Uint32Array;
  trigramFirst: Uint32Array;
  trigramBigram: Uint32Array;
  trigramLogProb: Float32Array;
}

const TRIE_HEADER = 'Trie Language Model';
const QUANT_BITS = 16;
const QUANT_BINS = 1 << QUANT_BITS;
/** logmath base 1.0001 to log10. */
const LOGMATH_TO_LOG10 = Math.log(1.0001) / Math.LN10;

export async function readSphinxTrie(path: string): Promise<TrigramModel> {
  return parseSphinxTrie(await readFile(path));
}

/** Yields to the event loop every 64k entries, so reading the 27 MB model in a server process stalls nothing for long. */
export async function parseSphinxTrie(file: Buffer): Promise<TrigramModel> {
  if (file.toString('latin1', 0, TRIE_HEADER.length) !== TRIE_HEADER) {
    throw new Error('not a Sphinx trie language model (header mismatch)');
  }
  let offset = TRIE_HEADER.length;
  const order = file.readUInt8(offset);
  offset += 1;
  if (order !== 3) throw new Error(`only trigram models are supported, this one has order ${order}`);
  const counts = [0, 1, 2].map((i) => file.readUInt32LE(offset + 4 * i)) as [number, number, number];
  offset += 4 * order;
  offset += 4; // quantisation type, always binned

  const floats = (at: number, length: number): Float32Array => {
    const copy = new Float32Array(length);
    for (let i = 0; i < length; i++) copy[i] = file.readFloatLE(at + 4 * i);
    return copy;
  };
  const bigramProbBins = floats(offset, QUANT_BINS);
  const bigramBackoffBins = floats(offset + 4 * QUANT_BINS, QUANT_BINS);
  const trigramProbBins = floats(offset + 8 * QUANT_BINS, QUANT_BINS);
  offset += 12 * QUANT_BINS;

  const unigramCount = counts[0];
  const unigramLogProb = new Float32Array(unigramCount);
  const unigramLogBackoff = new Float32Array(unigramCount);
  const unigramChildStart = new Uint32Array(unigramCount + 1);
  for (let i = 0; i <= unigramCount; i++) {
    const at = offset + 12 * i;
    if (i < unigramCount) {
      unigramLogProb[i] = file.readFloatLE(at) * LOGMATH_TO_LOG10;
      unigramLogBackoff[i] = file.readFloatLE(at + 4) * LOGMATH_TO_LOG10;
    }
    unigramChildStart[i] = file.readUInt32LE(at + 8);
  }
  offset += 12 * (unigramCount + 1);

  // Sizes follow the header counts; the entries actually reachable follow the `next` pointers, which may be fewer.
  const wordBits = requiredBits(unigramCount);
  const nextBits = requiredBits(counts[2]);
  const bigramBits = wordBits + 2 * QUANT_BITS + nextBits;
  const trigramBits = wordBits + QUANT_BITS;
  const bigramBase = offset;
  const trigramBase = bigramBase + arraySize(counts[1], bigramBits);
  const wordsBase = trigramBase + arraySize(counts[2], trigramBits);
  const read = (base: number, bitOffset: number, bits: number): number => readBits(file, base, bitOffset, bits);

  const bigramCount = unigramChildStart[unigramCount]!;
  const bigramContext = new Uint32Array(bigramCount);
  const bigramPredicted = new Uint32Array(bigramCount);
  const bigramLogProb = new Float32Array(bigramCount);
  const bigramLogBackoff = new Float32Array(bigramCount);
  const bigramChildStart = new Uint32Array(bigramCount + 1);
  for (let predicted = 0; predicted < unigramCount; predicted++) {
    if ((predicted & 0x3fff) === 0) await yieldToEventLoop();
    for (let i = unigramChildStart[predicted]!; i < unigramChildStart[predicted + 1]!; i++) {
      const at = i * bigramBits;
      bigramContext[i] = read(bigramBase, at, wordBits);
      bigramPredicted[i] = predicted;
      bigramLogBackoff[i] = bigramBackoffBins[read(bigramBase, at + wordBits, QUANT_BITS)]! * LOGMATH_TO_LOG10;
      bigramLogProb[i] = bigramProbBins[read(bigramBase, at + wordBits + QUANT_BITS, QUANT_BITS)]! * LOGMATH_TO_LOG10;
    }
  }
  for (let i = 0; i <= bigramCount; i++) {
    if ((i & 0xffff) === 0) await yieldToEventLoop();
    bigramChildStart[i] = read(bigramBase, i * bigramBits + wordBits + 2 * QUANT_BITS, nextBits);
  }

  const trigramCount = bigramChildStart[bigramCount]!;
  const trigramFirst = new Uint32Array(trigramCount);
  const trigramBigram = new Uint32Array(trigramCount);
  const trigramLogProb = new Float32Array(trigramCount);
  for (let bigram = 0; bigram < bigramCount; bigram++) {
    if ((bigram & 0xffff) === 0) await yieldToEventLoop();
    for (let i = bigramChildStart[bigram]!; i < bigramChildStart[bigram + 1]!; i++) {
      const at = i * trigramBits;
      trigramFirst[i] = read(trigramBase, at, wordBits);
      trigramBigram[i] = bigram;
      trigramLogProb[i] = trigramProbBins[read(trigramBase, at + wordBits, QUANT_BITS)]! * LOGMATH_TO_LOG10;
    }
  }

  const wordBytes = file.readInt32LE(wordsBase);
  const words = file.toString('utf8', wordsBase + 4, wordsBase + 4 + wordBytes).split('\0').slice(0, unigramCount);
  if (words.length !== unigramCount) throw new Error(`expected ${unigramCount} words, found ${words.length}`);
  const wordIds = new Map(words.map((word, id) => [word, id]));

  return {
    words, wordIds, unigramLogProb, unigramLogBackoff, unigramChildStart,
    bigramContext, bigramPredicted, bigramLogProb, bigramLogBackoff, bigramChildStart,
    trigramFirst, trigramBigram, trigramLogProb,
  };
}

/** Index of bigram "context predicted", or -1. Children of a node are sorted by word id, as the trie builder inserts them. */
export function findBigram(model: TrigramModel, context: number, predicted: number): number {
  return searchSorted(model.bigramContext, model.unigramChildStart[predicted]!, model.unigramChildStart[predicted + 1]!, context);
}

/** Index of trigram "first context predicted", or -1. */
export function findTrigram(model: TrigramModel, first: number, context: number, predicted: number): number {
  const bigram = findBigram(model, context, predicted);
  if (bigram < 0) return -1;
  return searchSorted(model.trigramFirst, model.bigramChildStart[bigram]!, model.bigramChildStart[bigram + 1]!, first);
}

/** log10 P(predicted | history) with Katz back-off; history is oldest first and may be shorter than 2. Unknown words give -Infinity. */
export function logProb(model: TrigramModel, history: readonly number[], predicted: number): number {
  if (predicted < 0) return -Infinity;
  const context = history.length > 0 ? history[history.length - 1]! : -1;
  const first = history.length > 1 ? history[history.length - 2]! : -1;
  if (context >= 0 && first >= 0) {
    const trigram = findTrigram(model, first, context, predicted);
    if (trigram >= 0) return model.trigramLogProb[trigram]!;
    const contextBigram = findBigram(model, first, context);
    const backoff = contextBigram >= 0 ? model.bigramLogBackoff[contextBigram]! : 0;
    return backoff + logProb(model, [context], predicted);
  }
  if (context >= 0) {
    const bigram = findBigram(model, context, predicted);
    if (bigram >= 0) return model.bigramLogProb[bigram]!;
    return model.unigramLogBackoff[context]! + model.unigramLogProb[predicted]!;
  }
  return model.unigramLogProb[predicted]!;
}

function searchSorted(values: Uint32Array, begin: number, end: number, wanted: number): number {
  let low = begin;
  let high = end - 1;
  while (low <= high) {
    const middle = (low + high) >>> 1;
    const value = values[middle]!;
    if (value === wanted) return middle;
    if (value < wanted) low = middle + 1;
    else high = middle - 1;
  }
  return -1;
}

function requiredBits(maxValue: number): number {
  let bits = 0;
  while (maxValue > 0) {
    bits++;
    maxValue = Math.floor(maxValue / 2);
  }
  return bits;
}

/** Bytes of one bit-packed array: an extra entry for the final `next` pointer, rounded up, plus 8 bytes of slack. */
function arraySize(entries: number, bitsPerEntry: number): number {
  return Math.floor(((1 + entries) * bitsPerEntry + 7) / 8) + 8;
}

/** Little-endian bit field of up to 25 bits, as sphinxbase's bitarr_read_int25. */
function readBits(file: Buffer, base: number, bitOffset: number, bits: number): number {
  const byte = base + Math.floor(bitOffset / 8);
  const word = file.readUInt32LE(byte);
  return (word >>> (bitOffset % 8)) & ((1 << bits) - 1);
}
