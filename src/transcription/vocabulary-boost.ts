import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { trainWittenBell } from './domain-lm.ts';
import { writeMixedArpa } from './lm-mix.ts';
import { runProcess } from './run-process.ts';
import { readSphinxTrie } from './sphinx-trie.ts';
import { TranscriptionError } from './transcriber.ts';
import { normaliseWords } from './wer.ts';

export const DEFAULT_CARE_CORPUS = fileURLToPath(new URL('./care-corpus.txt', import.meta.url));
export const DEFAULT_CARE_LEXICON = fileURLToPath(new URL('./care-lexicon.dict', import.meta.url));
/** Weight of the care-coordination model in the mixture; the generic model keeps the rest. */
export const DEFAULT_DOMAIN_WEIGHT = 0.5;

/** Bumped whenever the build below changes what it writes, so stale cached models are not reused. */
const BUILD_VERSION = 2;

export interface BoostInputs {
  /** The generic en-us model files: `en-us.lm.bin` and `cmudict-en-us.dict`. */
  genericLmPath: string;
  genericDictPath: string;
  corpusPath: string;
  lexiconPath: string;
  domainWeight: number;
  cacheDir: string;
  lmConvertPath: string;
}

export interface BoostedModel {
  lmPath: string;
  dictPath: string;
}

/** Sentences of a corpus file: one per line, '#' comments and blank lines skipped, words normalised as for WER. */
export function readCorpus(text: string): string[][] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '' && !line.trimStart().startsWith('#'))
    .map(normaliseWords)
    .filter((words) => words.length > 0);
}

/**
 * Returns the care-coordination language model and dictionary, building them into `cacheDir` the first time
 * (about 8 s on two cores, 380 MB here plus 250 MB in sphinx_lm_convert; reused until an input changes). The build reads the
 * generic trigram model, mixes in a trigram model trained on the corpus (see writeMixedArpa), writes ARPA text
 * and compiles it with sphinx_lm_convert. The dictionary is the generic one plus the lexicon, cut to the words
 * the mixed model knows.
 * Files appear by rename, so concurrent builders in other processes never see a half-written model.
 */
export async function ensureBoostedModel(inputs: BoostInputs): Promise<BoostedModel> {
  const [corpusText, lexiconText] = await Promise.all([
    readInput(inputs.corpusPath, 'care corpus'),
    readInput(inputs.lexiconPath, 'care lexicon'),
  ]);
  const [lmStat, dictStat] = await Promise.all([statInput(inputs.genericLmPath), statInput(inputs.genericDictPath)]);
  const key = createHash('sha256')
    .update(JSON.stringify({
      BUILD_VERSION,
      domainWeight: inputs.domainWeight,
      lm: [inputs.genericLmPath, lmStat.size, lmStat.mtimeMs],
      dict: [inputs.genericDictPath, dictStat.size, dictStat.mtimeMs],
    }))
    .update(corpusText)
    .update(lexiconText)
    .digest('hex')
    .slice(0, 16);
  const lmPath = join(inputs.cacheDir, `care-${key}.lm.bin`);
  const dictPath = join(inputs.cacheDir, `care-${key}.dict`);
  if ((await exists(lmPath)) && (await exists(dictPath))) return { lmPath, dictPath };

  await mkdir(inputs.cacheDir, { recursive: true });
  const scratch = join(inputs.cacheDir, `build-${process.pid}-${randomUUID()}`);
  try {
    const lexicon = parseLexicon(lexiconText);
    const genericDict = parseLexicon(await readFile(inputs.genericDictPath, 'utf8'));
    const sentences = readCorpus(corpusText);
    const pronounced = new Set([...genericDict, ...lexicon].map((entry) => baseWord(entry.word)));
    const unpronounceable = [...new Set(sentences.flat())].filter((word) => !pronounced.has(word));
    if (unpronounceable.length > 0) {
      // The decoder silently drops words it cannot pronounce; say which ones so the lexicon gets them.
      throw new TranscriptionError('model-unavailable', `care corpus words missing from both dictionaries: ${unpronounceable.join(', ')}`);
    }
    const generic = await readSphinxTrie(inputs.genericLmPath).catch((error: unknown) => {
      throw new TranscriptionError('model-unavailable', `cannot read ${inputs.genericLmPath}`, { cause: error });
    });
    const domain = trainWittenBell(sentences);
    await writeMixedArpa(generic, domain, inputs.domainWeight, `${scratch}.arpa`);

    // Only words the language model can predict are searchable, so the other 55,000 cmudict entries only cost
    // load time (0.2 s of every run). The lexicon's entries win over the generic ones for the same word.
    const vocabulary = new Set([...generic.words, ...domain.vocabulary]);
    const overridden = new Set(lexicon.map((entry) => baseWord(entry.word)));
    const entries = [
      ...genericDict.filter((entry) => vocabulary.has(baseWord(entry.word)) && !overridden.has(baseWord(entry.word))),
      ...lexicon.filter((entry) => vocabulary.has(baseWord(entry.word))),
    ];
    await writeFile(`${scratch}.dict`, entries.map((entry) => entry.line).join('\n') + '\n');
    const converted = await runProcess(inputs.lmConvertPath, ['-i', `${scratch}.arpa`, '-ifmt', 'arpa', '-o', `${scratch}.lm.bin`]);
    if (converted.exitCode !== 0) {
      throw new TranscriptionError('engine-failed', `sphinx_lm_convert failed (${converted.exitSignal ?? converted.exitCode}): ${converted.stderr.slice(-500)}`);
    }
    await rename(`${scratch}.dict`, dictPath);
    await rename(`${scratch}.lm.bin`, lmPath);
    return { lmPath, dictPath };
  } finally {
    await Promise.all(['.dict', '.arpa', '.lm.bin'].map((suffix) => rm(`${scratch}${suffix}`, { force: true })));
  }
}

interface LexiconEntry {
  word: string;
  line: string;
}

function parseLexicon(text: string): LexiconEntry[] {
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => ({ word: line.slice(0, line.search(/\s/)), line }));
}

/** "lisinopril(2)" is the second pronunciation of "lisinopril". */
function baseWord(word: string): string {
  return word.replace(/\(\d+\)$/, '');
}

async function readInput(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    throw new TranscriptionError('model-unavailable', `cannot read the ${what} at ${path}`, { cause: error });
  }
}

async function statInput(path: string): Promise<{ size: number; mtimeMs: number }> {
  try {
    return await stat(path);
  } catch (error) {
    throw new TranscriptionError('model-unavailable', `missing model file ${path} (is pocketsphinx-en-us installed?)`, { cause: error });
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
