import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runProcess } from '../../transcription/run-process.ts';

/** Debian packages the transcription tests and bench need; CI installs them. */
export const TRANSCRIPTION_APT_PACKAGES = ['pocketsphinx', 'pocketsphinx-en-us', 'pocketsphinx-testdata', 'sphinxbase-utils', 'ffmpeg', 'flite'];

const REQUIRED_BINARIES: Record<string, string> = {
  pocketsphinx_continuous: 'pocketsphinx',
  sphinx_lm_convert: 'sphinxbase-utils',
  ffmpeg: 'ffmpeg',
  flite: 'flite',
};
const EN_US_MODEL = '/usr/share/pocketsphinx/model/en-us/en-us.lm.bin';
export const LIBRIVOX_DIR = '/usr/share/pocketsphinx/test/data/librivox';

/**
 * Throws, naming the apt packages to install, when a tool or data file the transcription tests need is absent.
 * Deliberately a failure rather than a skip: CI installs these, so their absence is a broken machine.
 */
export function assertTranscriptionToolsInstalled(): void {
  const missing: string[] = [];
  const path = (process.env.PATH ?? '').split(':');
  for (const [binary, pkg] of Object.entries(REQUIRED_BINARIES)) {
    if (!path.some((dir) => existsSync(join(dir, binary)))) missing.push(`${binary} (apt package ${pkg})`);
  }
  if (!existsSync(EN_US_MODEL)) missing.push(`${EN_US_MODEL} (apt package pocketsphinx-en-us)`);
  if (!existsSync(join(LIBRIVOX_DIR, 'transcription'))) missing.push(`${LIBRIVOX_DIR} (apt package pocketsphinx-testdata)`);
  if (missing.length > 0) {
    throw new Error(
      `transcription tools missing: ${missing.join(', ')}.\n` +
        `Install them with: apt-get install -y ${TRANSCRIPTION_APT_PACKAGES.join(' ')}`,
    );
  }
}

export interface SpokenClip {
  path: string;
  reference: string;
}

/**
 * Speaks each sentence with flite's kal16 voice (a 16 kHz diphone voice PocketSphinx recognises well; espeak-ng
 * is nearly unrecognisable to it) into `dir`, as flite writes it: 16 kHz mono WAV.
 */
export async function synthesizeSentences(dir: string, sentences: readonly string[], voice = 'kal16'): Promise<SpokenClip[]> {
  return Promise.all(
    sentences.map(async (reference, index) => {
      const path = join(dir, `${voice}-${String(index + 1).padStart(2, '0')}.wav`);
      const result = await runProcess('flite', ['-voice', voice, '-t', reference, '-o', path]);
      if (result.exitCode !== 0) throw new Error(`flite failed on "${reference}": ${result.stderr}`);
      return { path, reference };
    }),
  );
}

/** Re-encodes a clip with ffmpeg, e.g. to an MP3 like a Twilio recording or an Opus WebM like a browser's MediaRecorder. */
export async function transcode(input: string, output: string, codecArgs: readonly string[]): Promise<string> {
  const result = await runProcess('ffmpeg', ['-nostdin', '-loglevel', 'error', '-y', '-i', input, ...codecArgs, output]);
  if (result.exitCode !== 0) throw new Error(`ffmpeg could not write ${output}: ${result.stderr}`);
  return output;
}

/** Digital silence, encoded as Opus in WebM as a browser recording would be. */
export async function makeSilentWebm(path: string, seconds: number): Promise<string> {
  const result = await runProcess('ffmpeg', [
    '-nostdin', '-loglevel', 'error', '-y',
    '-f', 'lavfi', '-i', `anullsrc=r=48000:cl=mono`, '-t', String(seconds), '-c:a', 'libopus', path,
  ]);
  if (result.exitCode !== 0) throw new Error(`ffmpeg could not write silence: ${result.stderr}`);
  return path;
}

/** A short video with no audio track at all. */
export async function makeVideoWithoutAudio(path: string): Promise<string> {
  const result = await runProcess('ffmpeg', [
    '-nostdin', '-loglevel', 'error', '-y',
    '-f', 'lavfi', '-i', 'testsrc=size=64x48:rate=5', '-t', '1', '-c:v', 'libvpx', '-b:v', '50k', path,
  ]);
  if (result.exitCode !== 0) throw new Error(`ffmpeg could not write a video: ${result.stderr}`);
  return path;
}

/** Random bytes under a .wav name: what a truncated or garbled upload looks like. */
export async function makeCorruptWav(path: string): Promise<string> {
  await writeFile(path, randomBytes(64 * 1024));
  return path;
}

/**
 * The LibriVox read-speech clips Debian's pocketsphinx-testdata ships (Sense and Sensibility, 16 kHz mono WAV),
 * with their reference text from the package's `transcription` file.
 */
export async function librivoxClips(): Promise<SpokenClip[]> {
  const text = await readFile(join(LIBRIVOX_DIR, 'transcription'), 'utf8');
  return text
    .split('\n')
    .map((line) => /^<s>\s*(.*?)\s*<\/s>\s*\((\S+)\)\s*$/.exec(line.trim()))
    .filter((match): match is RegExpExecArray => match !== null)
    .map((match) => ({ path: join(LIBRIVOX_DIR, `${match[2]}.wav`), reference: match[1]! }));
}
