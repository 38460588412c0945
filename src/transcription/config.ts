import { join } from 'node:path';
import { z } from 'zod';
import { createHttpTranscriber } from './http-transcriber.ts';
import { createPocketSphinxTranscriber, DEBIAN_EN_US_MODEL_DIR } from './pocketsphinx.ts';
import { TranscriptionError, type Transcriber } from './transcriber.ts';
import { DEFAULT_DOMAIN_WEIGHT } from './vocabulary-boost.ts';

/**
 * Which engine transcribes, chosen by configuration only. `pocketsphinx` is the offline default; `http` is an
 * OpenAI-compatible speech-to-text API (hosted, or a self-hosted Whisper server). `whisper-cpp` is designed
 * (docs/transcription.md) but has no adapter in this build, so createTranscriber refuses it at startup rather
 * than at the first call.
 */
export type TranscriptionConfig =
  | {
      engine: 'pocketsphinx';
      vocabularyBoost: boolean;
      domainWeight: number;
      modelDir: string;
      cacheDir: string;
      timeoutMs?: number;
    }
  | { engine: 'whisper-cpp'; modelPath: string; threads: number; timeoutMs?: number }
  | { engine: 'http'; url: string; token?: string; model: string; timeoutMs?: number };

const optional = z
  .string()
  .trim()
  .transform((value) => (value === '' ? undefined : value))
  .optional();
const flag = z.enum(['true', 'false', '1', '0']).transform((value) => value === 'true' || value === '1');

const EnvSchema = z.object({
  TRANSCRIBER: z.enum(['pocketsphinx', 'whisper-cpp', 'http']).default('pocketsphinx'),
  TRANSCRIBER_TIMEOUT_MS: z.preprocess((value) => (value === '' ? undefined : value), z.coerce.number().int().min(1_000).optional()),
  TRANSCRIBER_VOCABULARY_BOOST: flag.default(true),
  TRANSCRIBER_DOMAIN_WEIGHT: z.coerce.number().gt(0).lt(1).default(DEFAULT_DOMAIN_WEIGHT),
  TRANSCRIBER_MODEL_DIR: z.string().default(DEBIAN_EN_US_MODEL_DIR),
  TRANSCRIBER_CACHE_DIR: optional,
  WHISPER_MODEL_PATH: optional,
  WHISPER_THREADS: z.coerce.number().int().min(1).max(64).default(2),
  TRANSCRIBER_HTTP_URL: optional.pipe(z.url().optional()),
  TRANSCRIBER_HTTP_TOKEN: optional,
  TRANSCRIBER_HTTP_MODEL: z.string().trim().min(1).default('whisper-1'),
});

/** Reads TRANSCRIBER* / WHISPER_* variables; throws one error listing every problem. `dataDir` hosts the model cache by default. */
export function parseTranscriptionConfig(env: Record<string, string | undefined>, dataDir: string): TranscriptionConfig {
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) {
    throw new Error(`invalid transcription configuration: ${parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ')}`);
  }
  const e = parsed.data;
  const timeoutMs = e.TRANSCRIBER_TIMEOUT_MS;
  switch (e.TRANSCRIBER) {
    case 'pocketsphinx':
      return {
        engine: 'pocketsphinx',
        vocabularyBoost: e.TRANSCRIBER_VOCABULARY_BOOST,
        domainWeight: e.TRANSCRIBER_DOMAIN_WEIGHT,
        modelDir: e.TRANSCRIBER_MODEL_DIR,
        cacheDir: e.TRANSCRIBER_CACHE_DIR ?? join(dataDir, 'transcription-cache'),
        timeoutMs,
      };
    case 'whisper-cpp':
      if (!e.WHISPER_MODEL_PATH) throw new Error('invalid transcription configuration: TRANSCRIBER=whisper-cpp needs WHISPER_MODEL_PATH (a ggml model file the operator supplies)');
      return { engine: 'whisper-cpp', modelPath: e.WHISPER_MODEL_PATH, threads: e.WHISPER_THREADS, timeoutMs };
    case 'http':
      if (!e.TRANSCRIBER_HTTP_URL) throw new Error('invalid transcription configuration: TRANSCRIBER=http needs TRANSCRIBER_HTTP_URL');
      return { engine: 'http', url: e.TRANSCRIBER_HTTP_URL, token: e.TRANSCRIBER_HTTP_TOKEN, model: e.TRANSCRIBER_HTTP_MODEL, timeoutMs };
  }
}

/** Builds only the engine the configuration names. */
export function createTranscriber(config: TranscriptionConfig): Transcriber {
  switch (config.engine) {
    case 'pocketsphinx':
      return createPocketSphinxTranscriber({
        vocabularyBoost: config.vocabularyBoost,
        domainWeight: config.domainWeight,
        modelDir: config.modelDir,
        cacheDir: config.cacheDir,
        timeoutMs: config.timeoutMs,
      });
    case 'http':
      return createHttpTranscriber({ url: config.url, token: config.token, model: config.model, timeoutMs: config.timeoutMs });
    case 'whisper-cpp':
      throw new TranscriptionError('engine-missing', `TRANSCRIBER=${config.engine} is designed but has no adapter in this build; use pocketsphinx or http`);
  }
}
