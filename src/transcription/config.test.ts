import { describe, expect, it } from 'vitest';
import { createTranscriber, parseTranscriptionConfig } from './config.ts';

describe('parseTranscriptionConfig', () => {
  it('defaults to boosted PocketSphinx with its model cache under the data dir', () => {
    expect(parseTranscriptionConfig({}, '/srv/data')).toEqual({
      engine: 'pocketsphinx',
      vocabularyBoost: true,
      domainWeight: 0.5,
      modelDir: '/usr/share/pocketsphinx/model/en-us',
      cacheDir: '/srv/data/transcription-cache',
      timeoutMs: undefined,
    });
  });

  it('reads the PocketSphinx knobs', () => {
    const config = parseTranscriptionConfig(
      { TRANSCRIBER_VOCABULARY_BOOST: 'false', TRANSCRIBER_DOMAIN_WEIGHT: '0.3', TRANSCRIBER_TIMEOUT_MS: '120000', TRANSCRIBER_CACHE_DIR: '/var/cache/stt' },
      '/srv/data',
    );
    expect(config).toMatchObject({ engine: 'pocketsphinx', vocabularyBoost: false, domainWeight: 0.3, timeoutMs: 120_000, cacheDir: '/var/cache/stt' });
  });

  it('lists every invalid value at once', () => {
    expect(() => parseTranscriptionConfig({ TRANSCRIBER: 'vosk', TRANSCRIBER_DOMAIN_WEIGHT: '1.5' }, '/d')).toThrow(
      /TRANSCRIBER:.*TRANSCRIBER_DOMAIN_WEIGHT:/,
    );
  });

  it('requires the operator-supplied model for whisper.cpp and the URL for a hosted API', () => {
    expect(() => parseTranscriptionConfig({ TRANSCRIBER: 'whisper-cpp' }, '/d')).toThrow(/WHISPER_MODEL_PATH/);
    expect(parseTranscriptionConfig({ TRANSCRIBER: 'whisper-cpp', WHISPER_MODEL_PATH: '/models/ggml-base.en.bin' }, '/d')).toEqual({
      engine: 'whisper-cpp', modelPath: '/models/ggml-base.en.bin', threads: 2, timeoutMs: undefined,
    });
    expect(() => parseTranscriptionConfig({ TRANSCRIBER: 'http' }, '/d')).toThrow(/TRANSCRIBER_HTTP_URL/);
    expect(() => parseTranscriptionConfig({ TRANSCRIBER: 'http', TRANSCRIBER_HTTP_URL: 'not a url' }, '/d')).toThrow(/TRANSCRIBER_HTTP_URL/);
  });
});

describe('createTranscriber', () => {
  it('builds the engine the configuration names, and refuses designed-but-unbuilt ones at startup', () => {
    expect(createTranscriber(parseTranscriptionConfig({}, '/d')).engine).toBe('pocketsphinx+care-lm');
    expect(createTranscriber(parseTranscriptionConfig({ TRANSCRIBER_VOCABULARY_BOOST: '0' }, '/d')).engine).toBe('pocketsphinx');
    const http = parseTranscriptionConfig({ TRANSCRIBER: 'http', TRANSCRIBER_HTTP_URL: 'http://127.0.0.1:9/v1', TRANSCRIBER_HTTP_MODEL: 'whisper-large-v3' }, '/d');
    expect(createTranscriber(http).engine).toBe('http:whisper-large-v3');
    expect(createTranscriber(parseTranscriptionConfig({ TRANSCRIBER: 'http', TRANSCRIBER_HTTP_URL: 'https://api.openai.com/v1' }, '/d')).engine).toBe('http:whisper-1');
    const whisper = parseTranscriptionConfig({ TRANSCRIBER: 'whisper-cpp', WHISPER_MODEL_PATH: '/models/ggml-base.en.bin' }, '/d');
    expect(() => createTranscriber(whisper)).toThrow(expect.objectContaining({ code: 'engine-missing' }));
  });
});
