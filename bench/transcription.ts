/**
 * node --import tsx bench/transcription.ts
 *
 * Offline transcription figures for the default engine (PocketSphinx), with and without the care-coordination
 * vocabulary boost: word error rate per test set, speed as seconds of processing per second of audio (real-time
 * factor), and peak resident memory of the engine child process. Test sets: the held-out care sentences spoken
 * by two flite voices, and the LibriVox read speech from Debian's pocketsphinx-testdata. Runs one file at a time
 * so the timings are not fighting over the two cores. BENCH_VERBOSE=1 prints every hypothesis;
 * BENCH_DOMAIN_WEIGHTS=0.3,0.5,0.7 adds a sensitivity sweep of the mixture weight (the default, 0.5, is not
 * tuned on these sets).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createPocketSphinxTranscriber, type EngineRun, type PocketSphinxOptions } from '../src/transcription/pocketsphinx.ts';
import { runProcess } from '../src/transcription/run-process.ts';
import { DEFAULT_DOMAIN_WEIGHT } from '../src/transcription/vocabulary-boost.ts';
import { corpusWordErrorRate } from '../src/transcription/wer.ts';
import { CARE_TEST_SENTENCES } from '../src/test/audio/care-sentences.ts';
import {
  assertTranscriptionToolsInstalled,
  librivoxClips,
  synthesizeSentences,
  transcode,
  type SpokenClip,
} from '../src/test/audio/fixtures.ts';

const verbose = process.env.BENCH_VERBOSE === '1';
const sweep = (process.env.BENCH_DOMAIN_WEIGHTS ?? '')
  .split(',')
  .filter((value) => value.trim() !== '')
  .map(Number);

interface SetResult {
  wer: number;
  audioSec: number;
  engineSec: number;
  totalSec: number;
  peakRssKb: number;
}

async function runSet(clips: readonly SpokenClip[], options: PocketSphinxOptions): Promise<SetResult> {
  const runs: EngineRun[] = [];
  const transcriber = createPocketSphinxTranscriber({ ...options, onEngineRun: (run) => runs.push(run) });
  await transcriber.prepare();
  const pairs: Array<{ reference: string; hypothesis: string }> = [];
  const startedAt = performance.now();
  for (const clip of clips) {
    const transcript = await transcriber.transcribe({ mediaPath: clip.path });
    pairs.push({ reference: clip.reference, hypothesis: transcript.text });
    if (verbose) console.log(`    [${transcriber.engine}] ref: ${clip.reference}\n    ${' '.repeat(transcriber.engine.length + 2)} hyp: ${transcript.text}`);
  }
  const totalSec = (performance.now() - startedAt) / 1000;
  return {
    wer: corpusWordErrorRate(pairs),
    audioSec: runs.reduce((sum, run) => sum + run.audioSec, 0),
    engineSec: runs.reduce((sum, run) => sum + run.engineMs / 1000, 0),
    totalSec,
    peakRssKb: Math.max(0, ...runs.map((run) => run.enginePeakRssKb ?? 0)),
  };
}

const pct = (value: number): string => `${(value * 100).toFixed(1)}%`;
const mb = (kb: number): string => `${(kb / 1024).toFixed(0)} MB`;

/** The whole transcription bench; `npm run bench` calls it after the spine figures. */
export async function runTranscriptionBench(): Promise<void> {
  assertTranscriptionToolsInstalled();
  const workDir = await mkdtemp(join(tmpdir(), 'bench-transcription-'));
  const cacheDir = join(workDir, 'model-cache');
  try {
    const sets: Array<{ name: string; clips: SpokenClip[] }> = [
      { name: 'care sentences, flite kal16 voice', clips: await synthesizeSentences(workDir, CARE_TEST_SENTENCES, 'kal16') },
      { name: 'care sentences, flite rms voice', clips: await synthesizeSentences(workDir, CARE_TEST_SENTENCES, 'rms') },
      { name: 'LibriVox read speech (pocketsphinx-testdata)', clips: await librivoxClips() },
    ];
    // Phone audio: flite's default kal voice speaks at 8 kHz, as Twilio records calls.
    const phone = { name: "care sentences, flite kal voice at 8 kHz (phone band)", clips: await synthesizeSentences(workDir, CARE_TEST_SENTENCES, 'kal') };

    console.log('transcription bench: PocketSphinx (pocketsphinx_continuous, Debian 12), one file at a time');
    const buildStartedAt = performance.now();
    await createPocketSphinxTranscriber({ vocabularyBoost: true, cacheDir }).prepare();
    console.log(`  care-lm build (first use, then cached): ${((performance.now() - buildStartedAt) / 1000).toFixed(1)} s`);

    for (const set of sets) {
      const generic = await runSet(set.clips, { vocabularyBoost: false });
      const boosted = await runSet(set.clips, { vocabularyBoost: true, cacheDir });
      const words = set.clips.reduce((sum, clip) => sum + clip.reference.split(/\s+/).length, 0);
      console.log(`\n  ${set.name}: ${set.clips.length} clips, ${words} words, ${generic.audioSec.toFixed(1)} s of audio`);
      for (const [label, result] of [['without boost', generic], ['with boost   ', boosted]] as const) {
        console.log(
          `    ${label}  WER ${pct(result.wer).padStart(6)}` +
            `  RTF engine ${(result.engineSec / result.audioSec).toFixed(3)} s/s` +
            `  RTF end-to-end ${(result.totalSec / result.audioSec).toFixed(3)} s/s` +
            `  engine peak RSS ${mb(result.peakRssKb)}`,
        );
      }
      const gain = generic.wer - boosted.wer;
      console.log(`    boost changes WER by ${gain >= 0 ? '-' : '+'}${(Math.abs(gain) * 100).toFixed(1)} points`);
    }

    // Narrowband audio through the 16 kHz model: ffmpeg's resampler (no energy above 4 kHz) against spectral folding.
    {
      const resampled = await runSet(phone.clips, { vocabularyBoost: true, cacheDir, narrowband: 'resample' });
      const folded = await runSet(phone.clips, { vocabularyBoost: true, cacheDir });
      console.log(`\n  ${phone.name}: ${phone.clips.length} clips, ${folded.audioSec.toFixed(1)} s of audio, with boost`);
      console.log(`    resampled to 16 kHz  WER ${pct(resampled.wer).padStart(6)}`);
      console.log(`    folded to 16 kHz     WER ${pct(folded.wer).padStart(6)}  RTF engine ${(folded.engineSec / folded.audioSec).toFixed(3)} s/s  engine peak RSS ${mb(folded.peakRssKb)}`);
      const librivox8k = await Promise.all(sets[2]!.clips.map(async (clip, index) => ({ reference: clip.reference, path: await transcode(clip.path, join(workDir, `librivox-8k-${index}.wav`), ['-ar', '8000', '-ac', '1']) })));
      const lvResampled = await runSet(librivox8k, { vocabularyBoost: true, cacheDir, narrowband: 'resample' });
      const lvFolded = await runSet(librivox8k, { vocabularyBoost: true, cacheDir });
      console.log(`  LibriVox downsampled to 8 kHz: resampled WER ${pct(lvResampled.wer)}, folded WER ${pct(lvFolded.wer)}`);
    }

    // Cross-check the /proc polling with the kernel's own accounting of one run.
    const probe = sets[2]!.clips[0]!;
    const timed = await runProcess('/usr/bin/time', [
      '-v', 'pocketsphinx_continuous', '-infile', probe.path, '-logfn', '/dev/null',
    ]).catch(() => undefined);
    const maxRss = timed && /Maximum resident set size \(kbytes\): (\d+)/.exec(timed.stderr);
    if (maxRss) console.log(`\n  /usr/bin/time -v, generic model on one LibriVox clip: maximum resident set ${mb(Number(maxRss[1]))}`);

    if (sweep.length > 0) {
      console.log(`\n  sensitivity to the mixture weight (default ${DEFAULT_DOMAIN_WEIGHT}; not tuned on these sets):`);
      for (const domainWeight of sweep) {
        const wers: string[] = [];
        for (const set of sets) wers.push(pct((await runSet(set.clips, { vocabularyBoost: true, cacheDir, domainWeight })).wer));
        console.log(`    weight ${domainWeight}: WER ${wers.join(' / ')}  (${sets.map((set) => set.name).join(' / ')})`);
      }
    }
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

// Standalone: node --import tsx bench/transcription.ts
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await runTranscriptionBench();
