import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig, type MediaStoreConfig } from '../config.ts';
import { listMediaJobs } from '../db/calls.ts';
import { CARE_KEY_WORDS } from '../test/audio/care-sentences.ts';
import { assertTranscriptionToolsInstalled, synthesizeSentences, type SpokenClip } from '../test/audio/fixtures.ts';
import { backends } from '../test/databases.ts';
import { startFakeS3, type FakeS3 } from '../test/fake-s3.ts';
import { eventually, startHarness, TEST_TWILIO, type Harness } from '../test/harness.ts';
import { createPocketSphinxTranscriber } from '../transcription/pocketsphinx.ts';
import { normaliseWords } from '../transcription/wer.ts';
import { createMediaStorage, DEFAULT_CALLS_CONFIG, startCallsWorker } from './index.ts';
import type { MediaJobWorker } from './media-jobs.ts';

const SENTENCE = 'Please call the pharmacy about my insurance';
const PATIENT = '+15551234567';
const S3_CREDENTIALS = { accessKeyId: 'AKIDCALLSTEST', secretAccessKey: 'calls-s3-secret-0123456789abcdef' };
const transcriber = createPocketSphinxTranscriber();
let audioDir: string;
let clip: SpokenClip;

beforeAll(async () => {
  assertTranscriptionToolsInstalled();
  audioDir = await mkdtemp(join(tmpdir(), 'calls-s3-audio-'));
  [clip] = (await synthesizeSentences(audioDir, [SENTENCE])) as [SpokenClip];
  await transcriber.prepare();
});
afterAll(async () => {
  if (audioDir) await rm(audioDir, { recursive: true, force: true });
});

// The storage-facing half of calls.int.test.ts's first test, with MEDIA_STORE=s3: what changes is only configuration.
describe.each(backends())('a recorded call with MEDIA_STORE=s3 on $name', { timeout: 180_000 }, (backend) => {
  let s3: FakeS3;
  let media: MediaStoreConfig;
  let h: Harness;
  let worker: MediaJobWorker | undefined;

  beforeEach(async () => {
    s3 = await startFakeS3({ ...S3_CREDENTIALS, buckets: ['care-media'] });
    // The web role (the harness) and the worker role each build their store from the same parsed environment, as two processes would.
    media = parseConfig({
      MEDIA_STORE: 's3',
      S3_BUCKET: 'care-media',
      S3_ENDPOINT: s3.url,
      S3_FORCE_PATH_STYLE: 'true',
      S3_ACCESS_KEY_ID: S3_CREDENTIALS.accessKeyId,
      S3_SECRET_ACCESS_KEY: S3_CREDENTIALS.secretAccessKey,
      S3_PREFIX: 'switchboard',
      S3_SSE: 'AES256',
    }).calls.media;
    h = await startHarness(backend, { calls: { media } });
    h.fake.voice.setRecordingAudio(clip.path);
    worker = undefined;
  });
  afterEach(async () => {
    await worker?.stop();
    await h.close();
    await s3.close();
  });

  it('stores the recording in the bucket (through one SlowDown), transcribes it from there and streams it back with ranges', async () => {
    const coordinator = await h.createCoordinator({ name: 'Ada' });
    await h.database.db.query(`UPDATE coordinators SET phone = '+15557654321' WHERE id = $1`, [coordinator.id]);
    s3.enqueueFault({ kind: 'status', status: 503, operation: 'PutObject' });
    worker = await startCallsWorker({
      db: h.database.db,
      logger: pino({ level: 'silent' }),
      config: { ...DEFAULT_CALLS_CONFIG, media },
      twilio: { ...TEST_TWILIO, apiBase: h.fake.url },
      storage: await createMediaStorage(media),
      transcriber,
      overrides: { pollMs: 100, backoff: { baseMs: 20, capMs: 100 } },
    });
    const played = await h.fake.voice.playInboundCall({ voiceUrl: `${h.baseUrl}/webhooks/twilio/voice`, from: PATIENT, to: TEST_TWILIO.fromNumber, statusCallbackUrl: `${h.baseUrl}/webhooks/twilio/call-status` });
    expect(played.steps.every((step) => step.status === 200)).toBe(true);

    const patientId = (await h.database.db.query<{ patient_id: string }>(`SELECT patient_id FROM channel_identities WHERE address = $1`, [PATIENT])).rows[0]!.patient_id;
    const recording = await eventually(
      async () => {
        const items = (await h.api('GET', `/api/patients/${patientId}/timeline`, { token: coordinator.token })).json.items;
        const found = items.find((item: any) => item.type === 'call')?.recordings[0];
        return found?.status === 'transcribed' || found?.status === 'failed' ? found : undefined;
      },
      { timeoutMs: 120_000, what: 'recording transcribed' },
    );
    expect(recording.failureReason).toBeNull();
    const words = normaliseWords(recording.transcript.text);
    for (const key of CARE_KEY_WORDS[SENTENCE]!) expect(words, recording.transcript.text).toContain(key);

    const original = await readFile(clip.path);
    const stored = s3.object('care-media', `switchboard/recordings/${recording.id}.wav`);
    expect(stored).toMatchObject({ sse: 'AES256', contentType: 'audio/x-wav' });
    expect(stored!.body.equals(original)).toBe(true);
    expect(s3.objects().map((object) => object.key)).toEqual([`switchboard/recordings/${recording.id}.wav`]);
    // One attempt of the job: the SDK's own retry absorbed the 503.
    expect((await listMediaJobs(h.database.db, recording.id)).map((job) => [job.kind, job.state, job.attempts])).toEqual([
      ['download', 'done', 1],
      ['transcribe', 'done', 1],
    ]);
    expect(s3.requests.filter((r) => r.operation === 'PutObject').map((r) => r.status)).toEqual([503, 200]);
    expect(s3.requests.filter((r) => r.operation === 'GetObject').map((r) => r.status)).toEqual([200]);

    const part = await fetch(`${h.baseUrl}${recording.mediaUrl}`, { headers: { authorization: `Bearer ${coordinator.token}`, range: 'bytes=100-199' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 100-199/${original.length}`);
    expect(Buffer.from(await part.arrayBuffer()).equals(original.subarray(100, 200))).toBe(true);
    expect(s3.requests.slice(-2).map((r) => `${r.operation} ${r.status}`)).toEqual(['HeadObject 200', 'GetObject 206']);
  });
});
