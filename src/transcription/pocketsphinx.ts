import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { convertToSpeechWav, isSilentWav, type NarrowbandUpsampling } from './media.ts';
import { runProcess } from './run-process.ts';
import {
  emptyTranscript,
  TranscriptionError,
  type Transcriber,
  type Transcript,
  type TranscriptSegment,
} from './transcriber.ts';
import {
  DEFAULT_CARE_CORPUS,
  DEFAULT_CARE_LEXICON,
  DEFAULT_DOMAIN_WEIGHT,
  ensureBoostedModel,
  type BoostedModel,
} from './vocabulary-boost.ts';

/** Where Debian's pocketsphinx-en-us puts the US English models. */
export const DEBIAN_EN_US_MODEL_DIR = '/usr/share/pocketsphinx/model/en-us';

export interface PocketSphinxOptions {
  /** Mix a care-coordination language model into the generic one and add drug names to the dictionary. Default true. */
  vocabularyBoost?: boolean;
  /** Weight of the care model in the mixture, 0 < w < 1. Default 0.5. */
  domainWeight?: number;
  /** Training sentences and extra pronunciations for the boost; default the files beside this module. */
  corpusPath?: string;
  lexiconPath?: string;
  /** Holds `en-us/` (acoustic model), `en-us.lm.bin` and `cmudict-en-us.dict`. */
  modelDir?: string;
  /** Where the boosted model is built once and reused. Default `<os tmpdir>/switchboard-transcription`. */
  cacheDir?: string;
  /**
   * Hard limit on one transcription, ffmpeg and engine together. Default: 10 minutes for decoding the media,
   * then 60 s plus three times the audio's length for the engine (it runs at about a quarter of real time).
   */
  timeoutMs?: number;
  binaries?: { pocketsphinx?: string; ffmpeg?: string; lmConvert?: string };
  /** How narrowband (phone) audio is brought to 16 kHz; default 'fold' (see convertToSpeechWav). */
  narrowband?: NarrowbandUpsampling;
  /** Called after every engine run, for metrics: what it cost and how much audio it heard. */
  onEngineRun?: (run: EngineRun) => void;
}

export interface EngineRun {
  audioSec: number;
  ffmpegMs: number;
  engineMs: number;
  /** Peak resident memory of the pocketsphinx child, from /proc polling; undefined if the run was too short to sample. */
  enginePeakRssKb?: number;
}

export interface PocketSphinxTranscriber extends Transcriber {
  /** Checks the model files and builds the boosted model if needed, so the first call to transcribe is not the slow one. */
  prepare(signal?: AbortSignal): Promise<void>;
}

const FFMPEG_TIMEOUT_MS = 10 * 60_000;

/**
 * Offline transcription with CMU PocketSphinx (Debian 12 ships 5prealpha: the `pocketsphinx_continuous` CLI).
 * Each call runs ffmpeg, then pocketsphinx, as child processes: a native crash or a hang costs one job,
 * never the server.
 */
export function createPocketSphinxTranscriber(options: PocketSphinxOptions = {}): PocketSphinxTranscriber {
  const vocabularyBoost = options.vocabularyBoost ?? true;
  const modelDir = options.modelDir ?? DEBIAN_EN_US_MODEL_DIR;
  const pocketsphinx = options.binaries?.pocketsphinx ?? 'pocketsphinx_continuous';
  const ffmpeg = options.binaries?.ffmpeg ?? 'ffmpeg';
  const engine = vocabularyBoost ? 'pocketsphinx+care-lm' : 'pocketsphinx';
  const generic: BoostedModel = { lmPath: join(modelDir, 'en-us.lm.bin'), dictPath: join(modelDir, 'cmudict-en-us.dict') };
  let model: Promise<BoostedModel> | undefined;

  const loadModel = (): Promise<BoostedModel> => {
    model ??= (async () => {
      await requireFile(join(modelDir, 'en-us', 'mdef'));
      if (!vocabularyBoost) {
        await Promise.all([requireFile(generic.lmPath), requireFile(generic.dictPath)]);
        return generic;
      }
      return ensureBoostedModel({
        genericLmPath: generic.lmPath,
        genericDictPath: generic.dictPath,
        corpusPath: options.corpusPath ?? DEFAULT_CARE_CORPUS,
        lexiconPath: options.lexiconPath ?? DEFAULT_CARE_LEXICON,
        domainWeight: options.domainWeight ?? DEFAULT_DOMAIN_WEIGHT,
        cacheDir: options.cacheDir ?? join(tmpdir(), 'switchboard-transcription'),
        lmConvertPath: options.binaries?.lmConvert ?? 'sphinx_lm_convert',
      });
    })();
    // A failed build is not cached: the next call tries again (the operator may have installed the package since).
    model.catch(() => {
      model = undefined;
    });
    return model;
  };

  const transcribe = async ({ mediaPath, signal }: { mediaPath: string; signal?: AbortSignal }): Promise<Transcript> => {
    signal?.throwIfAborted();
    // A path with no file behind it is a storage fault to retry or page about, not media to shrug at.
    const media = await stat(mediaPath).catch((error: unknown) => {
      throw new TranscriptionError('media-missing', `no media file at ${mediaPath}`, { cause: error });
    });
    if (!media.isFile()) throw new TranscriptionError('media-missing', `${mediaPath} is not a file`);
    const { lmPath, dictPath } = await loadModel();
    const deadline = options.timeoutMs === undefined ? undefined : AbortSignal.timeout(options.timeoutMs);
    const workDir = await mkdtemp(join(tmpdir(), 'switchboard-stt-'));
    try {
      const audio = await withTimeout(
        (stageSignal) => convertToSpeechWav(mediaPath, join(workDir, 'speech.wav'), { ffmpegPath: ffmpeg, signal: stageSignal, narrowband: options.narrowband }),
        [signal, deadline ?? AbortSignal.timeout(FFMPEG_TIMEOUT_MS)],
        'ffmpeg',
      );
      if (!audio.ok) return emptyTranscript(engine, audio.reason);
      if (await isSilentWav(audio.wavPath, audio.data)) return emptyTranscript(engine, 'silence', audio.durationSec);

      const engineLimit = deadline ?? AbortSignal.timeout(Math.ceil(60_000 + 3_000 * audio.durationSec));
      const run = await withTimeout(
        (stageSignal) =>
          runProcess(
            pocketsphinx,
            ['-infile', audio.wavPath, '-hmm', join(modelDir, 'en-us'), '-lm', lmPath, '-dict', dictPath, '-time', 'yes'],
            { signal: stageSignal },
          ),
        [signal, engineLimit],
        'pocketsphinx',
      );
      if (run.exitCode !== 0) {
        const why = run.exitSignal ? `died of ${run.exitSignal}` : `exited with ${run.exitCode}`;
        throw new TranscriptionError('engine-failed', `pocketsphinx ${why}: ${lastLines(run.stderr)}`);
      }
      options.onEngineRun?.({ audioSec: audio.durationSec, ffmpegMs: audio.ffmpegMs, engineMs: run.wallMs, enginePeakRssKb: run.peakRssKb });
      const segments = parseTimedOutput(run.stdout);
      if (segments.length === 0) return emptyTranscript(engine, 'no-speech-recognised', audio.durationSec);
      return { text: segments.map((segment) => segment.text).join(' '), segments, durationSec: audio.durationSec, engine };
    } finally {
      await rm(workDir, { recursive: true, force: true });
    }
  };

  return {
    engine,
    transcribe,
    async prepare(signal) {
      signal?.throwIfAborted();
      await loadModel();
    },
  };
}

const WORD_LINE = /^(\S+) (\d+(?:\.\d+)?) (\d+(?:\.\d+)?) \S+$/;
const FILLER = /^(<.*>|\[.*\]|\+\+.*\+\+)$/;

/**
 * Parses `pocketsphinx_continuous -time yes` output: per utterance (the CLI's voice-activity detector splits the
 * audio at pauses) one hypothesis line, then one "word start end posterior" line per word, times in seconds from
 * the start of the file. Fillers (<s>, </s>, <sil>, [NOISE]) are dropped and "word(2)" pronunciation variants
 * folded. Each utterance with words becomes one segment.
 */
export function parseTimedOutput(stdout: string): TranscriptSegment[] {
  const segments: TranscriptSegment[] = [];
  let words: Array<{ word: string; start: number; end: number }> = [];
  const close = (): void => {
    if (words.length > 0) {
      segments.push({
        startSec: words[0]!.start,
        endSec: words[words.length - 1]!.end,
        text: words.map((entry) => entry.word).join(' '),
      });
    }
    words = [];
  };
  for (const line of stdout.split('\n')) {
    const match = WORD_LINE.exec(line.trim());
    if (!match) {
      // A hypothesis line (possibly empty) opens the next utterance.
      close();
      continue;
    }
    const word = match[1]!.replace(/\(\d+\)$/, '');
    if (FILLER.test(word)) continue;
    words.push({ word, start: Number(match[2]), end: Number(match[3]) });
  }
  close();
  return segments;
}

/** Runs a stage under the caller's signal and a time limit; a limit that fires becomes a TranscriptionError, the caller's abort stays its own reason. */
async function withTimeout<T>(
  stage: (signal: AbortSignal) => Promise<T>,
  signals: Array<AbortSignal | undefined>,
  what: string,
): Promise<T> {
  const present = signals.filter((signal): signal is AbortSignal => signal !== undefined);
  try {
    return await stage(AbortSignal.any(present));
  } catch (error) {
    const timedOut = error instanceof DOMException && error.name === 'TimeoutError';
    if (timedOut) throw new TranscriptionError('timed-out', `${what} took longer than its time limit`, { cause: error });
    throw error;
  }
}

async function requireFile(path: string): Promise<void> {
  try {
    await stat(path);
  } catch (error) {
    throw new TranscriptionError('model-unavailable', `missing model file ${path} (is pocketsphinx-en-us installed?)`, { cause: error });
  }
}

function lastLines(text: string): string {
  return text.trim().split('\n').slice(-3).join(' | ');
}
