import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CARE_KEY_WORDS } from '../test/audio/care-sentences.ts';
import { assertTranscriptionToolsInstalled, makeCorruptWav, synthesizeSentences, type SpokenClip } from '../test/audio/fixtures.ts';
import { startFakeStt, type FakeStt } from '../test/fake-stt.ts';
import { createTranscriber, parseTranscriptionConfig } from './config.ts';
import { createHttpTranscriber } from './http-transcriber.ts';
import { createPocketSphinxTranscriber } from './pocketsphinx.ts';
import { runProcess } from './run-process.ts';
import { normaliseWords } from './wer.ts';

const TOKEN = 'sk-test-0123456789';
const SENTENCE = 'Please call the pharmacy about my insurance';
let dir: string;
let phone: SpokenClip;
let silence: string;

beforeAll(async () => {
  assertTranscriptionToolsInstalled();
  dir = await mkdtemp(join(tmpdir(), 'stt-http-'));
  // flite's default voice: 8 kHz, like a phone call.
  [phone] = (await synthesizeSentences(dir, [SENTENCE], 'kal')) as [SpokenClip];
  silence = join(dir, 'silence.wav');
  const made = await runProcess('ffmpeg', ['-nostdin', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'anullsrc=r=8000:cl=mono', '-t', '3', '-c:a', 'pcm_s16le', silence]);
  expect(made.exitCode, made.stderr).toBe(0);
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('speech-to-text over HTTP (OpenAI-compatible API, on a loopback fake)', () => {
  let fake: FakeStt;
  beforeEach(async () => {
    fake = await startFakeStt({ token: TOKEN });
  });
  afterEach(async () => {
    await fake.close();
  });
  const engine = (extra: { token?: string; timeoutMs?: number; maxRetries?: number } = {}) =>
    createHttpTranscriber({ url: fake.url, token: extra.token ?? TOKEN, model: 'whisper-1', timeoutMs: extra.timeoutMs ?? 5_000, maxRetries: extra.maxRetries ?? 2 });

  it('sends 16 kHz mono WAV with the model and asks for segment times; maps the segments into the transcript', async () => {
    fake.script({ text: 'please call the pharmacy about my insurance', segments: [{ start: 0.12, end: 1.4, text: 'please call the pharmacy' }, { start: 1.5, end: 2.6, text: 'about my insurance' }] });
    const transcript = await engine().transcribe({ mediaPath: phone.path });
    expect(transcript).toMatchObject({
      engine: 'http:whisper-1',
      text: 'please call the pharmacy about my insurance',
      segments: [{ startSec: 0.12, endSec: 1.4, text: 'please call the pharmacy' }, { startSec: 1.5, endSec: 2.6, text: 'about my insurance' }],
    });
    expect(transcript.durationSec).toBeGreaterThan(1);
    expect(fake.received).toEqual([expect.objectContaining({ model: 'whisper-1', responseFormat: 'verbose_json', granularities: ['segment'], sampleRate: 16_000, channels: 1 })]);
  });

  it('answers silence and unreadable media itself, without calling the API; empty text is "no speech recognised"', async () => {
    expect(await engine().transcribe({ mediaPath: silence })).toMatchObject({ text: '', emptyReason: 'silence' });
    expect(await engine().transcribe({ mediaPath: await makeCorruptWav(join(dir, 'corrupt.wav')) })).toMatchObject({ text: '', emptyReason: 'unreadable-media' });
    expect(fake.attempts).toBe(0);
    fake.script({ text: '', segments: [] });
    expect(await engine().transcribe({ mediaPath: phone.path })).toMatchObject({ text: '', emptyReason: 'no-speech-recognised' });
  });

  it('retries a 429, a 503 and a dropped connection through the SDK, then succeeds', async () => {
    fake.script({ text: 'refill', segments: [{ start: 0, end: 1, text: 'refill' }] });
    fake.enqueueFault({ kind: 'status', status: 429, retryAfterSec: 0 });
    fake.enqueueFault({ kind: 'status', status: 503 });
    expect((await engine({ maxRetries: 2 }).transcribe({ mediaPath: phone.path })).text).toBe('refill');
    expect(fake.attempts).toBe(3);
    fake.enqueueFault({ kind: 'drop' });
    expect((await engine({ maxRetries: 1 }).transcribe({ mediaPath: phone.path })).text).toBe('refill');
    expect(fake.attempts).toBe(5);
  });

  it('fails with a TranscriptionError, for the job to retry later, when the API keeps failing, times out or refuses the key', async () => {
    for (let i = 0; i < 3; i++) fake.enqueueFault({ kind: 'status', status: 500 });
    await expect(engine({ maxRetries: 2 }).transcribe({ mediaPath: phone.path })).rejects.toMatchObject({ name: 'TranscriptionError', code: 'engine-failed', message: expect.stringContaining('HTTP 500') });
    fake.enqueueFault({ kind: 'hang' });
    await expect(engine({ maxRetries: 0, timeoutMs: 300 }).transcribe({ mediaPath: phone.path })).rejects.toMatchObject({ name: 'TranscriptionError', code: 'timed-out' });
    await expect(engine({ token: 'sk-wrong' }).transcribe({ mediaPath: phone.path })).rejects.toMatchObject({ code: 'engine-failed', message: expect.stringContaining('HTTP 401') });
  });

  it('is chosen by configuration alone, and transcribes real speech end to end when the server behind it does', async () => {
    // The loopback server "hears" with PocketSphinx here, so the words come from the audio, not from a script.
    const recogniser = createPocketSphinxTranscriber();
    await fake.close();
    fake = await startFakeStt({
      token: TOKEN,
      recognise: async (wav) => {
        const path = join(dir, `upload-${Date.now()}.wav`);
        await (await import('node:fs/promises')).writeFile(path, wav);
        const heard = await recogniser.transcribe({ mediaPath: path });
        return { text: heard.text, segments: heard.segments.map((s) => ({ start: s.startSec, end: s.endSec, text: s.text })) };
      },
    });
    const transcriber = createTranscriber(parseTranscriptionConfig({ TRANSCRIBER: 'http', TRANSCRIBER_HTTP_URL: fake.url, TRANSCRIBER_HTTP_TOKEN: TOKEN }, dir));
    const transcript = await transcriber.transcribe({ mediaPath: phone.path });
    const words = normaliseWords(transcript.text);
    for (const key of CARE_KEY_WORDS[SENTENCE]!) expect(words, transcript.text).toContain(key);
    expect(transcript.segments.length).toBeGreaterThan(0);
  }, 120_000);
});
