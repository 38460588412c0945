import { open } from 'node:fs/promises';
import { runProcess } from './run-process.ts';
import { TranscriptionError, type EmptyReason } from './transcriber.ts';

export const SAMPLE_RATE_HZ = 16_000;
const BYTES_PER_SECOND = SAMPLE_RATE_HZ * 2;

export type ConvertedAudio =
  | { ok: true; wavPath: string; data: WavData; durationSec: number; ffmpegMs: number }
  | { ok: false; reason: EmptyReason; detail: string };

/**
 * Decodes any media ffmpeg understands (a Twilio WAV/MP3 recording, a browser's WebM/Opus visit) into the
 * 16 kHz mono signed 16-bit little-endian WAV the en-us acoustic model was trained on.
 * Media ffmpeg cannot read, or that holds no audio stream, is an outcome, not an error.
 */
export async function convertToSpeechWav(
  mediaPath: string,
  wavPath: string,
  opts: { ffmpegPath?: string; signal?: AbortSignal } = {},
): Promise<ConvertedAudio> {
  const ffmpeg = opts.ffmpegPath ?? 'ffmpeg';
  const result = await runProcess(
    ffmpeg,
    [
      '-nostdin', '-hide_banner', '-loglevel', 'error', '-y',
      '-i', mediaPath,
      '-map', '0:a:0', '-vn', '-sn', '-dn',
      '-ac', '1', '-ar', String(SAMPLE_RATE_HZ), '-c:a', 'pcm_s16le',
      // bitexact keeps ffmpeg from adding a LIST/INFO chunk, so the WAV is the plain 44-byte-header kind every reader accepts.
      '-map_metadata', '-1', '-fflags', '+bitexact', '-flags:a', '+bitexact',
      '-f', 'wav', wavPath,
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
  const data = await findWavData(wavPath);
  if (data === undefined) return { ok: false, reason: 'unreadable-media', detail: 'ffmpeg wrote no WAV data chunk' };
  if (data.bytes < 2) return { ok: false, reason: 'no-audio', detail: 'the audio stream decoded to no samples' };
  return { ok: true, wavPath, data, durationSec: data.bytes / BYTES_PER_SECOND, ffmpegMs: result.wallMs };
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
