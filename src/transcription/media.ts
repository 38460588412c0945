import { open, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { runProcess } from './run-process.ts';
import { TranscriptionError, type EmptyReason } from './transcriber.ts';

export const SAMPLE_RATE_HZ = 16_000;
const BYTES_PER_SECOND = SAMPLE_RATE_HZ * 2;

export type ConvertedAudio =
  | { ok: true; wavPath: string; data: WavData; durationSec: number; ffmpegMs: number }
  | { ok: false; reason: EmptyReason; detail: string };

/** How audio below 16 kHz reaches the 16 kHz model: folded (default), or ffmpeg's resampler (for comparison in the bench). */
export type NarrowbandUpsampling = 'fold' | 'resample';

/** Below this input sample rate audio is narrowband (telephone: Twilio records at 8 kHz) and is folded up. */
const NARROWBAND_BELOW_HZ = SAMPLE_RATE_HZ;
const NARROWBAND_HZ = 8_000;

/**
 * Decodes any media ffmpeg understands (a Twilio WAV/MP3 recording, a browser's WebM/Opus visit) into the
 * 16 kHz mono signed 16-bit little-endian WAV the en-us acoustic model was trained on.
 * Media ffmpeg cannot read, or that holds no audio stream, is an outcome, not an error.
 *
 * Narrowband input (below 16 kHz, e.g. an 8 kHz phone recording) is decoded at 8 kHz and then upsampled by
 * spectral folding (`foldTo16k`), not by ffmpeg's resampler: the 16 kHz model expects energy up to 6.8 kHz,
 * and a properly resampled 8 kHz signal has none above 4 kHz, which wrecks its features (word error rate
 * 88-89 % on flite's 8 kHz voice); the folded signal mirrors 0-4 kHz into 4-8 kHz, which the model hears as
 * speech (13 %). docs/transcription.md has the figures.
 */
export async function convertToSpeechWav(
  mediaPath: string,
  wavPath: string,
  opts: { ffmpegPath?: string; ffprobePath?: string; signal?: AbortSignal; narrowband?: NarrowbandUpsampling } = {},
): Promise<ConvertedAudio> {
  const ffmpeg = opts.ffmpegPath ?? 'ffmpeg';
  const inputHz = (opts.narrowband ?? 'fold') === 'fold' ? await probeSampleRate(mediaPath, opts.ffprobePath ?? siblingFfprobe(ffmpeg), opts.signal) : undefined;
  const narrowband = inputHz !== undefined && inputHz < NARROWBAND_BELOW_HZ;
  const decodedPath = narrowband ? `${wavPath}.8k.wav` : wavPath;
  const result = await runProcess(
    ffmpeg,
    [
      '-nostdin', '-hide_banner', '-loglevel', 'error', '-y',
      '-i', mediaPath,
      '-map', '0:a:0', '-vn', '-sn', '-dn',
      '-ac', '1', '-ar', String(narrowband ? NARROWBAND_HZ : SAMPLE_RATE_HZ), '-c:a', 'pcm_s16le',
      // bitexact keeps ffmpeg from adding a LIST/INFO chunk, so the WAV is the plain 44-byte-header kind every reader accepts.
      '-map_metadata', '-1', '-fflags', '+bitexact', '-flags:a', '+bitexact',
      '-f', 'wav', decodedPath,
    ],
    { signal: opts.signal },
  );
  if (result.exitSignal !== null) {
    throw new TranscriptionError('engine-failed', `ffmpeg died of ${result.exitSignal}: ${lastLine(result.stderr)}`);
  }
  if (result.exitCode !== 0) {
    const detail = lastLine(result.stderr) || `ffmpeg exited with ${result.exitCode}`;
    // "-map 0:a:0" matching nothing is how ffmpeg says a readable file has no audio track.
    const noAudio = /matches no streams|does not contain any stream/i.test(result.stderr);
    return { ok: false, reason: noAudio ? 'no-audio' : 'unreadable-media', detail };
  }
  if (narrowband) {
    const decoded = await findWavData(decodedPath);
    if (decoded === undefined) return { ok: false, reason: 'unreadable-media', detail: 'ffmpeg wrote no WAV data chunk' };
    await foldTo16k(decodedPath, decoded, wavPath);
    await rm(decodedPath, { force: true });
  }
  const data = await findWavData(wavPath);
  if (data === undefined) return { ok: false, reason: 'unreadable-media', detail: 'ffmpeg wrote no WAV data chunk' };
  if (data.bytes < 2) return { ok: false, reason: 'no-audio', detail: 'the audio stream decoded to no samples' };
  return { ok: true, wavPath, data, durationSec: data.bytes / BYTES_PER_SECOND, ffmpegMs: result.wallMs };
}

/** The first audio stream's sample rate, or undefined when ffprobe cannot tell (then ffmpeg decides what the media is). */
async function probeSampleRate(mediaPath: string, ffprobe: string, signal?: AbortSignal): Promise<number | undefined> {
  const probed = await runProcess(ffprobe, ['-v', 'error', '-select_streams', 'a:0', '-show_entries', 'stream=sample_rate', '-of', 'csv=p=0', mediaPath], { signal });
  const hz = Number.parseInt(probed.stdout.trim(), 10);
  return probed.exitCode === 0 && Number.isFinite(hz) && hz > 0 ? hz : undefined;
}

/** ffprobe ships beside ffmpeg (Debian's ffmpeg package has both). */
function siblingFfprobe(ffmpeg: string): string {
  return ffmpeg.includes('/') ? join(dirname(ffmpeg), 'ffprobe') : 'ffprobe';
}

/**
 * Upsamples 8 kHz 16-bit mono PCM to 16 kHz by inserting a zero after every sample, with no anti-imaging
 * filter: the spectrum below 4 kHz is kept and mirrored into 4-8 kHz. The gain of 2 keeps the level of the
 * 0-4 kHz band (zero insertion halves it); the batch cepstral mean normalisation the model uses removes any
 * remaining level difference. Written by hand because no resampler offers "keep the images" as an option.
 */
export async function foldTo16k(inputPath: string, data: WavData, outputPath: string): Promise<void> {
  const input = await open(inputPath, 'r');
  const output = await open(outputPath, 'w', 0o600);
  try {
    const samples = Math.floor(data.bytes / 2);
    await output.write(wavHeader(samples * 2 * 2));
    const inBuffer = Buffer.alloc(64 * 1024);
    const outBuffer = Buffer.alloc(inBuffer.length * 2);
    let position = data.offset;
    const end = data.offset + samples * 2;
    while (position < end) {
      const { bytesRead } = await input.read(inBuffer, 0, Math.min(inBuffer.length, end - position), position);
      if (bytesRead < 2) break;
      position += bytesRead;
      const count = Math.floor(bytesRead / 2);
      for (let i = 0; i < count; i++) {
        const folded = Math.max(-32768, Math.min(32767, inBuffer.readInt16LE(i * 2) * 2));
        outBuffer.writeInt16LE(folded, i * 4);
        outBuffer.writeInt16LE(0, i * 4 + 2);
      }
      await output.write(outBuffer, 0, count * 4);
    }
  } finally {
    await input.close();
    await output.close();
  }
}

/** A canonical 44-byte header for 16 kHz mono 16-bit PCM. */
function wavHeader(dataBytes: number): Buffer {
  const header = Buffer.alloc(44);
  header.write('RIFF', 0, 'latin1');
  header.writeUInt32LE(36 + dataBytes, 4);
  header.write('WAVEfmt ', 8, 'latin1');
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20);
  header.writeUInt16LE(1, 22);
  header.writeUInt32LE(SAMPLE_RATE_HZ, 24);
  header.writeUInt32LE(BYTES_PER_SECOND, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36, 'latin1');
  header.writeUInt32LE(dataBytes, 40);
  return header;
}

export interface WavData {
  offset: number;
  bytes: number;
}

/** Where the `data` chunk of a RIFF/WAVE file lies, walking the chunks rather than assuming a 44-byte header. */
export async function findWavData(wavPath: string): Promise<WavData | undefined> {
  const file = await open(wavPath, 'r');
  try {
    const { size } = await file.stat();
    const header = Buffer.alloc(12);
    await file.read(header, 0, 12, 0);
    if (header.toString('latin1', 0, 4) !== 'RIFF' || header.toString('latin1', 8, 12) !== 'WAVE') return undefined;
    let offset = 12;
    const chunk = Buffer.alloc(8);
    while (offset + 8 <= size) {
      await file.read(chunk, 0, 8, offset);
      const id = chunk.toString('latin1', 0, 4);
      const length = chunk.readUInt32LE(4);
      if (id === 'data') return { offset: offset + 8, bytes: Math.min(length, size - offset - 8) };
      offset += 8 + length + (length % 2);
    }
    return undefined;
  } finally {
    await file.close();
  }
}

/**
 * True when no 30 ms frame of the WAV rises above `thresholdDbfs`. Recorders' digital silence and room tone sit
 * far below speech (-20 to -35 dBFS), so this only short-cuts the obvious case; faint noise still goes to the
 * engine, which then finds no words.
 */
export async function isSilentWav(wavPath: string, data: WavData, thresholdDbfs = -50): Promise<boolean> {
  const threshold = 32768 * 10 ** (thresholdDbfs / 20);
  const frameSamples = Math.round(SAMPLE_RATE_HZ * 0.03);
  const file = await open(wavPath, 'r');
  try {
    const buffer = Buffer.alloc(frameSamples * 2 * 512);
    const end = data.offset + data.bytes;
    let position = data.offset;
    for (;;) {
      const { bytesRead } = await file.read(buffer, 0, Math.min(buffer.length, end - position), position);
      if (bytesRead < 2) return true;
      position += bytesRead;
      const samples = Math.floor(bytesRead / 2);
      for (let start = 0; start < samples; start += frameSamples) {
        const stop = Math.min(samples, start + frameSamples);
        let sumSquares = 0;
        for (let i = start; i < stop; i++) {
          const sample = buffer.readInt16LE(i * 2);
          sumSquares += sample * sample;
        }
        if (Math.sqrt(sumSquares / (stop - start)) > threshold) return false;
      }
    }
  } finally {
    await file.close();
  }
}

function lastLine(text: string): string {
  const lines = text.trim().split('\n');
  return (lines[lines.length - 1] ?? '').trim();
}
