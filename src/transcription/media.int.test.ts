import { readFile } from 'node:fs/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertTranscriptionToolsInstalled } from '../test/audio/fixtures.ts';
import { convertToSpeechWav } from './media.ts';
import { runProcess } from './run-process.ts';

let dir: string;
beforeAll(async () => {
  assertTranscriptionToolsInstalled();
  dir = await mkdtemp(join(tmpdir(), 'media-test-'));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function tone(name: string, hz: number, sampleRate: number): Promise<string> {
  const path = join(dir, name);
  const made = await runProcess('ffmpeg', ['-nostdin', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', `sine=frequency=${hz}:sample_rate=${sampleRate}:duration=1`, '-c:a', 'pcm_s16le', path]);
  expect(made.exitCode, made.stderr).toBe(0);
  return path;
}

/** Power of one frequency in 16 kHz samples (Goertzel), relative to the signal's total power. */
function relativePower(samples: Int16Array, hz: number): number {
  const coefficient = 2 * Math.cos((2 * Math.PI * hz) / 16_000);
  let s1 = 0;
  let s2 = 0;
  let total = 0;
  for (const x of samples) {
    const s0 = x + coefficient * s1 - s2;
    s2 = s1;
    s1 = s0;
    total += x * x;
  }
  const power = s1 * s1 + s2 * s2 - coefficient * s1 * s2;
  return power / (total * samples.length / 2);
}

async function converted(input: string, narrowband?: 'fold' | 'resample'): Promise<Int16Array> {
  const out = join(dir, `${Math.random().toString(36).slice(2)}.wav`);
  const result = await convertToSpeechWav(input, out, { narrowband });
  if (!result.ok) throw new Error(result.detail);
  expect(result.durationSec).toBeCloseTo(1, 2);
  const bytes = await readFile(out);
  expect(bytes.readUInt32LE(24)).toBe(16_000);
  const data = bytes.subarray(result.data.offset, result.data.offset + result.data.bytes);
  return new Int16Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
}

describe('converting media for the 16 kHz speech model', () => {
  it('folds 8 kHz audio up: a 1 kHz tone keeps its level and gains its 7 kHz mirror image', async () => {
    const samples = await converted(await tone('tone-8k.wav', 1000, 8000));
    expect(samples.length).toBe(16_000);
    expect(relativePower(samples, 1000)).toBeGreaterThan(0.4);
    expect(relativePower(samples, 7000)).toBeGreaterThan(0.4);
    // ffmpeg's resampler, for contrast, leaves nothing above 4 kHz.
    const resampled = await converted(await tone('tone-8k.wav', 1000, 8000), 'resample');
    expect(relativePower(resampled, 1000)).toBeGreaterThan(0.9);
    expect(relativePower(resampled, 7000)).toBeLessThan(0.01);
  });

  it('leaves 16 kHz and wideband audio unfolded', async () => {
    for (const rate of [16_000, 48_000]) {
      const samples = await converted(await tone(`tone-${rate}.wav`, 1000, rate));
      expect(relativePower(samples, 1000)).toBeGreaterThan(0.9);
      expect(relativePower(samples, 7000)).toBeLessThan(0.01);
    }
  });
});
