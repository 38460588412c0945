import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as setTimeoutPromise } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CARE_KEY_WORDS, CARE_TEST_SENTENCES } from '../test/audio/care-sentences.ts';
import {
  assertTranscriptionToolsInstalled,
  librivoxClips,
  makeCorruptWav,
  makeSilentWebm,
  makeVideoWithoutAudio,
  synthesizeSentences,
  transcode,
  type SpokenClip,
} from '../test/audio/fixtures.ts';
import { runProcess } from './run-process.ts';
import { createPocketSphinxTranscriber, type EngineRun } from './pocketsphinx.ts';
import { TranscriptionError, type Transcriber } from './transcriber.ts';
import { corpusWordErrorRate, normaliseWords } from './wer.ts';

// Needs pocketsphinx, pocketsphinx-en-us, pocketsphinx-testdata, sphinxbase-utils, ffmpeg and flite (Debian).
// Missing tools fail the suite in beforeAll with the apt-get line to run; they are never skipped.

let dir: string;
let spoken: SpokenClip[];
const engineRuns: EngineRun[] = [];
const boosted = createPocketSphinxTranscriber({ onEngineRun: (run) => engineRuns.push(run) });
const generic = createPocketSphinxTranscriber({ vocabularyBoost: false });

beforeAll(async () => {
  assertTranscriptionToolsInstalled();
  dir = await mkdtemp(join(tmpdir(), 'stt-test-'));
  spoken = await synthesizeSentences(dir, CARE_TEST_SENTENCES);
  // Builds the care model on first use (about 8 s), then it is cached under the OS temp dir.
  await Promise.all([boosted.prepare(), generic.prepare()]);
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** pocketsphinx children decoding one of our work files (their command lines name the switchboard-stt- temp dir). */
function engineProcesses(): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        // Only this test process's own decoders: other suites (or other checkouts) may be transcribing meanwhile.
        const parentPid = Number(readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[1]);
        return parentPid === process.pid && argv[0]?.endsWith('pocketsphinx_continuous') && argv.some((arg) => arg.includes('switchboard-stt-'));
      } catch {
        return false; // exited while we looked
      }
    })
    .map(Number);
}

async function pollFor(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (condition()) return true;
    await setTimeoutPromise(10);
  }
  return condition();
}

/** Two at a time: one decoder per core. */
async function transcribeAll(transcriber: Transcriber, clips: readonly SpokenClip[]): Promise<Array<{ reference: string; hypothesis: string }>> {
  const results: Array<{ reference: string; hypothesis: string }> = new Array(clips.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < clips.length) {
      const index = next++;
      const transcript = await transcriber.transcribe({ mediaPath: clips[index]!.path });
      results[index] = { reference: clips[index]!.reference, hypothesis: transcript.text };
    }
  };
  await Promise.all([lane(), lane()]);
  return results;
}

// Real decoding of several clips: well under a minute alone, more when the machine is shared.
describe('PocketSphinx transcriber', { timeout: 240_000 }, () => {
  it('transcribes an MP3 recording and finds the key words', async () => {
    const clip = spoken[0]!; // "i need a refill of my lisinopril prescription"
    const mediaPath = await transcode(clip.path, join(dir, 'call.mp3'), ['-c:a', 'libmp3lame', '-b:a', '64k']);
    const transcript = await boosted.transcribe({ mediaPath });
    const words = normaliseWords(transcript.text);
    for (const key of [...CARE_KEY_WORDS[clip.reference]!, 'lisinopril']) expect(words, transcript.text).toContain(key);
    expect(transcript.engine).toBe('pocketsphinx+care-lm');
    expect(transcript.emptyReason).toBeUndefined();
    expect(transcript.durationSec).toBeGreaterThan(1.5);
    const run = engineRuns.at(-1)!;
    expect(run.audioSec).toBeCloseTo(transcript.durationSec, 3);
    expect(run.engineMs).toBeGreaterThan(0);
  });

  it('recognises 8 kHz phone audio (flite\'s default voice, as a mu-law WAV like a phone line) by folding it up to 16 kHz', async () => {
    const phone = await synthesizeSentences(dir, CARE_TEST_SENTENCES.slice(0, 6), 'kal');
    const lines = await Promise.all(phone.map(async (clip, i) => ({ ...clip, path: await transcode(clip.path, join(dir, `phone-${i}.wav`), ['-ar', '8000', '-ac', '1', '-c:a', 'pcm_mulaw']) })));
    const folded: Array<{ reference: string; hypothesis: string }> = [];
    const resampled: Array<{ reference: string; hypothesis: string }> = [];
    const plain = createPocketSphinxTranscriber({ narrowband: 'resample' });
    for (const clip of lines) {
      folded.push({ reference: clip.reference, hypothesis: (await boosted.transcribe({ mediaPath: clip.path })).text });
      resampled.push({ reference: clip.reference, hypothesis: (await plain.transcribe({ mediaPath: clip.path })).text });
    }
    // The first sentence's key words come through, and folding does far better than ffmpeg's resampler, which
    // leaves the model nothing above 4 kHz (measured: about 13 % against 89 % on the whole set).
    const words = normaliseWords(folded[0]!.hypothesis);
    for (const key of CARE_KEY_WORDS[lines[0]!.reference]!) expect(words, folded[0]!.hypothesis).toContain(key);
    expect(corpusWordErrorRate(folded)).toBeLessThan(0.3);
    expect(corpusWordErrorRate(resampled)).toBeGreaterThan(corpusWordErrorRate(folded) + 0.3);
  });

  it('splits a browser WebM/Opus recording at pauses into segments timed from the start of the file', async () => {
    const first = spoken[2]!; // "please call the pharmacy about my insurance"
    const second = spoken[0]!; // "i need a refill of my lisinopril prescription"
    const visit = join(dir, 'visit.webm');
    const result = await runProcess('ffmpeg', [
      '-nostdin', '-loglevel', 'error', '-y', '-i', first.path, '-i', second.path,
      '-filter_complex', '[0:a]apad=pad_dur=2.5[a];[a][1:a]concat=n=2:v=0:a=1,aresample=48000', '-c:a', 'libopus', visit,
    ]);
    expect(result.exitCode, result.stderr).toBe(0);

    const transcript = await boosted.transcribe({ mediaPath: visit });
    expect(transcript.segments).toHaveLength(2);
    const [one, two] = transcript.segments as [typeof transcript.segments[0], typeof transcript.segments[0]];
    expect(one.text).toContain('pharmacy');
    expect(two.text).toContain('refill');
    expect(one.startSec).toBeLessThan(0.8);
    expect(one.endSec).toBeLessThan(two.startSec - 2);
    expect(two.endSec).toBeLessThanOrEqual(transcript.durationSec);
    expect(transcript.text).toBe(`${one.text} ${two.text}`);
  });

  it('gives an empty transcript with a reason for silence, corrupt media and video without audio', async () => {
    const silence = await boosted.transcribe({ mediaPath: await makeSilentWebm(join(dir, 'silence.webm'), 3) });
    expect(silence).toMatchObject({ text: '', segments: [], emptyReason: 'silence', engine: 'pocketsphinx+care-lm' });
    expect(silence.durationSec).toBeCloseTo(3, 1);

    const corrupt = await boosted.transcribe({ mediaPath: await makeCorruptWav(join(dir, 'garbled.wav')) });
    expect(corrupt).toMatchObject({ text: '', segments: [], emptyReason: 'unreadable-media', durationSec: 0 });

    const mute = await boosted.transcribe({ mediaPath: await makeVideoWithoutAudio(join(dir, 'mute.webm')) });
    expect(mute).toMatchObject({ text: '', segments: [], emptyReason: 'no-audio' });
  });

  it('recognises care sentences at least as well with the vocabulary boost as without', async () => {
    const [withBoost, withoutBoost] = [await transcribeAll(boosted, spoken), await transcribeAll(generic, spoken)];
    const boostedWer = corpusWordErrorRate(withBoost);
    const genericWer = corpusWordErrorRate(withoutBoost);
    console.info(`care sentences WER: ${(genericWer * 100).toFixed(1)}% without boost, ${(boostedWer * 100).toFixed(1)}% with`);
    expect(boostedWer).toBeLessThanOrEqual(genericWer);
    for (const { reference, hypothesis } of withBoost) {
      for (const key of CARE_KEY_WORDS[reference] ?? []) expect(normaliseWords(hypothesis), hypothesis).toContain(key);
    }
    // The drug names exist only in the boosted model.
    expect(withBoost.map((pair) => pair.hypothesis).join(' ')).toMatch(/lisinopril|metformin/);
    expect(withoutBoost.map((pair) => pair.hypothesis).join(' ')).not.toMatch(/lisinopril|metformin/);
  });

  it('does not make everyday read speech (LibriVox) worse', async () => {
    const clips = await librivoxClips();
    expect(clips).toHaveLength(5);
    const boostedWer = corpusWordErrorRate(await transcribeAll(boosted, clips));
    const genericWer = corpusWordErrorRate(await transcribeAll(generic, clips));
    console.info(`LibriVox WER: ${(genericWer * 100).toFixed(1)}% without boost, ${(boostedWer * 100).toFixed(1)}% with`);
    expect(genericWer).toBeLessThan(0.6);
    expect(boostedWer).toBeLessThanOrEqual(genericWer + 0.05);
  });

  it('kills the engine mid-decode when the caller aborts or the time limit passes', async () => {
    const [clip] = await librivoxClips();
    const controller = new AbortController();
    const pending = boosted.transcribe({ mediaPath: clip!.path, signal: controller.signal });
    pending.catch(() => {});
    // Poll to a deadline for the decoder child, then pull the plug on it.
    expect(await pollFor(() => engineProcesses().length > 0, 10_000)).toBe(true);
    controller.abort(new Error('job cancelled'));
    await expect(pending).rejects.toThrow('job cancelled');
    expect(engineProcesses()).toEqual([]);

    const hurried = createPocketSphinxTranscriber({ timeoutMs: 300 });
    const error = await hurried.transcribe({ mediaPath: clip!.path }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TranscriptionError);
    expect((error as TranscriptionError).code).toBe('timed-out');
    expect(engineProcesses()).toEqual([]);
  });

  it('throws, rather than returning an empty transcript, when the engine, ffmpeg or the media file is missing', async () => {
    const [clip] = await librivoxClips();
    const noEngine = createPocketSphinxTranscriber({ vocabularyBoost: false, binaries: { pocketsphinx: '/nonexistent/pocketsphinx_continuous' } });
    await expect(noEngine.transcribe({ mediaPath: clip!.path })).rejects.toMatchObject({ name: 'TranscriptionError', code: 'engine-missing' });

    const noFfmpeg = createPocketSphinxTranscriber({ vocabularyBoost: false, binaries: { ffmpeg: '/nonexistent/ffmpeg' } });
    await expect(noFfmpeg.transcribe({ mediaPath: clip!.path })).rejects.toMatchObject({ code: 'engine-missing' });

    await expect(generic.transcribe({ mediaPath: join(dir, 'never-uploaded.webm') })).rejects.toMatchObject({ code: 'media-missing' });

    const noModel = createPocketSphinxTranscriber({ modelDir: join(dir, 'no-model') });
    await expect(noModel.prepare()).rejects.toMatchObject({ code: 'model-unavailable' });
  });
});
