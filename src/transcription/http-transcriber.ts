import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI, { toFile } from 'openai';
import { convertToSpeechWav, isSilentWav } from './media.ts';
import { emptyTranscript, TranscriptionError, type Transcriber, type Transcript, type TranscriptSegment } from './transcriber.ts';

export interface HttpTranscriberOptions {
  /** Base URL of an OpenAI-compatible speech-to-text API, e.g. https://api.openai.com/v1 or a self-hosted server. */
  url: string;
  token?: string;
  /** The API's model name, e.g. whisper-1. */
  model: string;
  /** Per request; the SDK retries timeouts, 408/409/429/5xx and dropped connections up to `maxRetries` times. */
  timeoutMs?: number;
  maxRetries?: number;
  ffmpegPath?: string;
}

/**
 * A hosted (or self-hosted) speech-to-text engine behind HTTP: the OpenAI audio transcription API
 * (`POST {url}/audio/transcriptions`, multipart, `response_format=verbose_json` with segment timestamps), which
 * OpenAI and many self-hosted Whisper servers speak, through OpenAI's official SDK. The media is first decoded
 * to 16 kHz mono WAV like for the offline engine (so the API never sees a container it might not know, and
 * silence is answered without a call). A failure after the SDK's retries is a TranscriptionError, so the media
 * job retries it later with backoff; the audio leaves our network, so choose a provider under a BAA.
 */
export function createHttpTranscriber(options: HttpTranscriberOptions): Transcriber {
  const engine = `http:${options.model}`;
  const client = new OpenAI({
    baseURL: options.url,
    // The SDK insists on a key; a self-hosted server without auth ignores this placeholder.
    apiKey: options.token ?? 'unused',
    timeout: options.timeoutMs ?? 120_000,
    maxRetries: options.maxRetries ?? 2,
  });

  return {
    engine,
    async transcribe({ mediaPath, signal }): Promise<Transcript> {
      signal?.throwIfAborted();
      const media = await stat(mediaPath).catch((error: unknown) => {
        throw new TranscriptionError('media-missing', `no media file at ${mediaPath}`, { cause: error });
      });
      if (!media.isFile()) throw new TranscriptionError('media-missing', `${mediaPath} is not a file`);
      const workDir = await mkdtemp(join(tmpdir(), 'switchboard-stt-http-'));
      try {
        const audio = await convertToSpeechWav(mediaPath, join(workDir, 'speech.wav'), { ffmpegPath: options.ffmpegPath, signal });
        if (!audio.ok) return emptyTranscript(engine, audio.reason);
        if (await isSilentWav(audio.wavPath, audio.data)) return emptyTranscript(engine, 'silence', audio.durationSec);
        let result: OpenAI.Audio.Transcriptions.TranscriptionVerbose;
        try {
          result = await client.audio.transcriptions.create(
            // A Buffer-backed file, not a stream: the SDK can only retry a body it can send again. 16 kHz mono is
            // 1.9 MB a minute (hosted APIs cap uploads near 25 MB, about 13 minutes).
            { file: await toFile(await readFile(audio.wavPath), 'speech.wav', { type: 'audio/wav' }), model: options.model, response_format: 'verbose_json', timestamp_granularities: ['segment'] },
            signal ? { signal } : {},
          );
        } catch (error) {
          if (signal?.aborted) throw signal.reason;
          const status = error instanceof OpenAI.APIError && error.status ? ` (HTTP ${error.status})` : '';
          const timedOut = error instanceof OpenAI.APIConnectionTimeoutError;
          throw new TranscriptionError(timedOut ? 'timed-out' : 'engine-failed', `speech-to-text API${status}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
        }
        const segments: TranscriptSegment[] = (result.segments ?? [])
          .map((segment) => ({ startSec: segment.start, endSec: segment.end, text: segment.text.trim() }))
          .filter((segment) => segment.text !== '');
        const text = segments.length > 0 ? segments.map((segment) => segment.text).join(' ') : (result.text ?? '').trim();
        if (text === '') return emptyTranscript(engine, 'no-speech-recognised', audio.durationSec);
        // An API that gives text without segments still gets one segment spanning the audio.
        return { text, segments: segments.length > 0 ? segments : [{ startSec: 0, endSec: audio.durationSec, text }], durationSec: audio.durationSec, engine };
      } finally {
        await rm(workDir, { recursive: true, force: true });
      }
    },
  };
}
