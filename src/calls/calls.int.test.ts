import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { claimMediaJobs, completeDownload, listMediaJobs } from '../db/calls.ts';
import { CARE_KEY_WORDS } from '../test/audio/care-sentences.ts';
import { assertTranscriptionToolsInstalled, makeCorruptWav, synthesizeSentences, transcode, type SpokenClip } from '../test/audio/fixtures.ts';
import { backends } from '../test/databases.ts';
import { signTwilioRequest } from '../test/fake-twilio.ts';
import { eventually, startHarness, TEST_TWILIO, type Harness } from '../test/harness.ts';
import { createPocketSphinxTranscriber } from '../transcription/pocketsphinx.ts';
import { normaliseWords } from '../transcription/wer.ts';
import { createMediaStorage, DEFAULT_CALLS_CONFIG, startCallsWorker } from './index.ts';
import type { MediaJobWorker } from './media-jobs.ts';

const SENTENCE = 'Please call the pharmacy about my insurance';
const PATIENT = '+15551234567';
const COORDINATOR_PHONE = '+15557654321';
const transcriber = createPocketSphinxTranscriber();
let audioDir: string;
let clip: SpokenClip;
let corrupt: string;

beforeAll(async () => {
  assertTranscriptionToolsInstalled();
  audioDir = await mkdtemp(join(tmpdir(), 'calls-audio-'));
  // What Twilio records: 8 kHz, here two channels (record-from-answer-dual), spoken by flite's default 8 kHz voice.
  const [spoken] = (await synthesizeSentences(audioDir, [SENTENCE], 'kal')) as [SpokenClip];
  clip = { ...spoken, path: await transcode(spoken.path, join(audioDir, 'dual-8k.wav'), ['-ar', '8000', '-ac', '2', '-c:a', 'pcm_s16le']) };
  corrupt = await makeCorruptWav(join(audioDir, 'garbled.wav'));
  await transcriber.prepare();
});
afterAll(async () => {
  if (audioDir) await rm(audioDir, { recursive: true, force: true });
});

// Generous limits: each test decodes audio, which competes for the 2 cores with everything else running.
describe.each(backends())('phone calls, recordings and transcripts on $name', { timeout: 180_000 }, (backend) => {
  let h: Harness;
  let mediaDir: string;
  let workers: MediaJobWorker[];
  let coordinator: { id: string; token: string };

  beforeEach(async () => {
    mediaDir = await mkdtemp(join(tmpdir(), 'calls-media-'));
    h = await startHarness(backend, { calls: { media: { kind: 'local', dir: mediaDir } } });
    h.fake.voice.setRecordingAudio(clip.path);
    workers = [];
    coordinator = await h.createCoordinator({ name: 'Ada' });
    await h.database.db.query(`UPDATE coordinators SET phone = $2 WHERE id = $1`, [coordinator.id, COORDINATOR_PHONE]);
  });
  afterEach(async () => {
    for (const worker of workers) await worker.stop();
    await h.close();
    await rm(mediaDir, { recursive: true, force: true });
  });

  async function startWorker(overrides: { leaseMs?: number; workerId?: string } = {}): Promise<MediaJobWorker> {
    const worker = await startCallsWorker({
      db: h.database.db,
      logger: pino({ level: 'silent' }),
      config: { ...DEFAULT_CALLS_CONFIG, media: { kind: 'local', dir: mediaDir } },
      twilio: { ...TEST_TWILIO, apiBase: h.fake.url },
      storage: await createMediaStorage({ kind: 'local', dir: mediaDir }),
      transcriber,
      overrides: { pollMs: 100, backoff: { baseMs: 20, capMs: 100 }, ...overrides },
    });
    workers.push(worker);
    return worker;
  }

  const voiceUrl = () => `${h.baseUrl}/webhooks/twilio/voice`;
  const playCall = (options: Partial<Parameters<Harness['fake']['voice']['playInboundCall']>[0]> = {}) =>
    h.fake.voice.playInboundCall({ voiceUrl: voiceUrl(), from: PATIENT, to: TEST_TWILIO.fromNumber, statusCallbackUrl: `${h.baseUrl}/webhooks/twilio/call-status`, ...options });

  async function patientIdOf(phone: string): Promise<string> {
    const row = await h.database.db.query<{ patient_id: string }>(`SELECT patient_id FROM channel_identities WHERE address = $1`, [phone]);
    return row.rows[0]!.patient_id;
  }

  async function callItems(patientId: string, token = coordinator.token): Promise<any[]> {
    const response = await h.api('GET', `/api/patients/${patientId}/timeline`, { token });
    expect(response.status).toBe(200);
    return response.json.items.filter((item: any) => item.type === 'call');
  }

  async function settledRecording(patientId: string, status = 'transcribed'): Promise<any> {
    return eventually(
      async () => {
        const recording = (await callItems(patientId))[0]?.recordings[0];
        return recording?.status === status ? recording : undefined;
      },
      { timeoutMs: 120_000, what: `recording ${status}` },
    );
  }

  const count = async (table: string) => (await h.database.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`)).rows[0]!.n;

  it('puts an incoming call through to the coordinator, records it, downloads it with Basic auth and shows the transcript', async () => {
    await startWorker();
    const played = await playCall();
    const twiml = played.steps[0]!;
    expect(twiml.status).toBe(200);
    expect(twiml.body).toContain('<Dial record="record-from-answer-dual"');
    expect(twiml.body).toContain(`<Number>${COORDINATOR_PHONE}</Number>`);
    expect(twiml.body).toMatch(/recordingStatusCallback="[^"]*\/webhooks\/twilio\/recording\?callId=/);
    expect(played.verbs).toEqual(['Say', 'Dial:answer', 'Hangup']);
    expect(played.steps.every((step) => step.status === 200)).toBe(true);

    const patientId = await patientIdOf(PATIENT);
    const recording = await settledRecording(patientId);
    const words = normaliseWords(recording.transcript.text);
    for (const key of CARE_KEY_WORDS[SENTENCE]!) expect(words, recording.transcript.text).toContain(key);
    expect(recording.transcript.segments.length).toBeGreaterThan(0);
    expect(recording.transcript.segments[0]).toMatchObject({ startSec: expect.any(Number), endSec: expect.any(Number), text: expect.any(String) });
    expect(recording).toMatchObject({ kind: 'conversation', channels: 2, contentType: 'audio/x-wav', failureReason: null });

    const [call] = await callItems(patientId);
    expect(call).toMatchObject({
      direction: 'inbound',
      status: 'completed',
      route: 'dial',
      dialStatus: 'completed',
      durationSec: 8,
      participants: { patient: PATIENT, ourNumber: TEST_TWILIO.fromNumber, coordinatorId: coordinator.id, coordinatorPhone: COORDINATOR_PHONE },
    });
    const downloads = h.fake.voice.mediaRequests.filter((request) => request.recordingSid === played.recordingSids[0]);
    expect(downloads).toMatchObject([{ authorized: true, outcome: 'served' }]);
    expect(downloads[0]!.path).toMatch(/\.wav$/);
  });

  it('streams recording media with range requests, only to who may see the patient, and audits every read', async () => {
    await startWorker();
    await playCall();
    const patientId = await patientIdOf(PATIENT);
    const recording = await settledRecording(patientId);
    const original = await readFile(clip.path);

    const whole = await fetch(`${h.baseUrl}${recording.mediaUrl}`, { headers: { authorization: `Bearer ${coordinator.token}` } });
    expect(whole.status).toBe(200);
    expect(whole.headers.get('accept-ranges')).toBe('bytes');
    expect(Buffer.from(await whole.arrayBuffer()).equals(original)).toBe(true);

    const part = await fetch(`${h.baseUrl}${recording.mediaUrl}`, { headers: { authorization: `Bearer ${coordinator.token}`, range: 'bytes=100-199' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 100-199/${original.length}`);
    expect(Buffer.from(await part.arrayBuffer()).equals(original.subarray(100, 200))).toBe(true);

    const beyond = await fetch(`${h.baseUrl}${recording.mediaUrl}`, { headers: { authorization: `Bearer ${coordinator.token}`, range: `bytes=${original.length + 10}-` } });
    expect(beyond.status).toBe(416);
    expect(beyond.headers.get('content-range')).toBe(`bytes */${original.length}`);

    const other = await h.createCoordinator({ name: 'Grace' });
    expect((await fetch(`${h.baseUrl}${recording.mediaUrl}`, { headers: { authorization: `Bearer ${other.token}` } })).status).toBe(404);
    expect((await fetch(`${h.baseUrl}${recording.mediaUrl}`)).status).toBe(401);

    const audit = await h.database.db.query<{ actor_id: string; detail: any }>(`SELECT actor_id, detail FROM audit_log WHERE action = 'recording.media.read' ORDER BY id`);
    expect(audit.rows.map((row) => row.detail.range ?? 'whole')).toEqual(['whole', '100-199', `bytes=${original.length + 10}-`]);
    expect(audit.rows.every((row) => row.actor_id === coordinator.id)).toBe(true);
  });

  it('finds transcripts and messages in search, scoped to the caller’s patients', async () => {
    await startWorker();
    await h.sendSms('+15550000001', 'Is my pharmacy open on Sunday?');
    await playCall();
    await settledRecording(await patientIdOf(PATIENT));

    const search = await h.api('GET', `/api/search?q=${encodeURIComponent('pharmacy')}`, { token: coordinator.token });
    expect(search.status).toBe(200);
    expect(search.json.hits.map((hit: any) => hit.type).sort()).toEqual(['message', 'transcript']);
    const transcriptHit = search.json.hits.find((hit: any) => hit.type === 'transcript');
    expect(transcriptHit.snippet).toContain('«pharmacy»');
    expect(transcriptHit.patientId).toBe(await patientIdOf(PATIENT));

    const other = await h.createCoordinator({ name: 'Grace' });
    const theirs = await h.api('GET', '/api/search?q=pharmacy', { token: other.token });
    expect(theirs.json.hits).toEqual([]);
    const admin = await h.createCoordinator({ name: 'Root', role: 'admin' });
    expect((await h.api('GET', '/api/search?q=pharmacy', { token: admin.token })).json.hits).toHaveLength(2);
    expect((await h.api('GET', '/api/search?q=x', { token: admin.token })).status).toBe(400);
  });

  it('a caller who texted before is the same patient, and so is a caller who texts afterwards', async () => {
    await h.sendSms(PATIENT, 'Hello, it is me');
    await playCall({ recordingPath: clip.path });
    const second = '+15559990000';
    await playCall({ from: second });
    await h.sendSms(second, 'I just called you');
    const patients = await h.database.db.query<{ address: string; n: number }>(
      `SELECT address, count(DISTINCT patient_id)::int AS n FROM channel_identities GROUP BY address`,
    );
    expect(patients.rows.every((row) => row.n === 1)).toBe(true);
    expect(await count('patients')).toBe(2);
    const first = await patientIdOf(PATIENT);
    const timeline = (await h.api('GET', `/api/patients/${first}/timeline`, { token: coordinator.token })).json.items;
    expect(timeline.map((item: any) => item.type)).toEqual(['message', 'event', 'call']);
    expect(timeline.filter((item: any) => item.type === 'call')).toHaveLength(1);
  });

  it('takes a voicemail when the coordinator is away, and when they do not answer', async () => {
    await startWorker();
    // The patient is known and assigned first: routing gives a new patient to no coordinator who is away.
    expect((await h.sendSms(PATIENT, 'texting before I call')).status).toBe(200);
    await h.database.db.query(`UPDATE coordinators SET status = 'away' WHERE id = $1`, [coordinator.id]);
    const away = await playCall();
    expect(away.steps[0]!.body).not.toContain('<Dial');
    expect(away.steps[0]!.body).toContain('<Record');
    expect(away.verbs).toEqual(['Say', 'Say', 'Record', 'Hangup']);
    const patientId = await patientIdOf(PATIENT);
    const voicemail = await settledRecording(patientId);
    expect(voicemail.kind).toBe('voicemail');
    expect((await callItems(patientId))[0]).toMatchObject({ route: 'voicemail', routeReason: 'the coordinator is away' });

    await h.database.db.query(`UPDATE coordinators SET status = 'available' WHERE id = $1`, [coordinator.id]);
    const unanswered = await playCall({ dial: 'no-answer' });
    expect(unanswered.verbs).toEqual(['Say', 'Dial:no-answer', 'Say', 'Record', 'Hangup']);
    const calls = await eventually(async () => {
      const items = await callItems(patientId);
      return items.length === 2 && items[1].recordings[0]?.status === 'transcribed' ? items : undefined;
    }, { timeoutMs: 120_000, what: 'second voicemail transcribed' });
    expect(calls[1]).toMatchObject({ route: 'voicemail', dialStatus: 'no-answer', routeReason: 'the coordinator did not answer (no-answer)' });
    expect(calls[1].recordings[0].kind).toBe('voicemail');
  });

  it('uses team business hours: outside them the call goes to voicemail', async () => {
    const team = await h.database.db.query<{ id: string }>(
      `INSERT INTO teams (name, timezone, business_hours) VALUES ('Night shift', 'UTC', $1) RETURNING id`,
      [JSON.stringify({ mon: [], tue: [], wed: [], thu: [], fri: [], sat: [], sun: [] })],
    );
    await h.database.db.query(`INSERT INTO team_members (team_id, coordinator_id) VALUES ($1, $2)`, [team.rows[0]!.id, coordinator.id]);
    const closed = await playCall();
    expect(closed.steps[0]!.body).toContain('<Record');
    expect((await callItems(await patientIdOf(PATIENT)))[0]).toMatchObject({ route: 'voicemail', routeReason: 'outside the coordinator’s hours' });

    const allDay = Object.fromEntries(['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'].map((day) => [day, [['00:00', '24:00']]]));
    await h.database.db.query(`UPDATE teams SET business_hours = $1`, [JSON.stringify(allDay)]);
    const open = await playCall();
    expect(open.steps[0]!.body).toContain('<Dial');
  });

  it('stores and downloads a recording once however often its callback repeats', async () => {
    await startWorker();
    const played = await playCall();
    const patientId = await patientIdOf(PATIENT);
    await settledRecording(patientId);
    const callSid = played.callSid;
    const callId = (await callItems(patientId))[0].id;
    const again = await h.fake.voice.sendRecordingStatus({ url: `${h.baseUrl}/webhooks/twilio/recording?callId=${callId}&kind=conversation`, callSid, recordingSid: played.recordingSids[0]! });
    expect(again.status).toBe(200);
    await Promise.all([1, 2, 3].map(() => h.fake.voice.sendRecordingStatus({ url: `${h.baseUrl}/webhooks/twilio/recording`, callSid, recordingSid: played.recordingSids[0]! })));
    expect(await count('call_recordings')).toBe(1);
    expect(await count('media_jobs')).toBe(2);
    const downloads = h.fake.voice.mediaRequests.filter((request) => request.recordingSid === played.recordingSids[0]);
    expect(downloads).toHaveLength(1);
  });

  it('refuses unsigned, mis-signed and malformed callbacks with a 4xx and changes nothing', async () => {
    const form = { AccountSid: TEST_TWILIO.accountSid, CallSid: 'CA' + '1'.repeat(32), From: PATIENT, To: TEST_TWILIO.fromNumber, CallStatus: 'ringing' };
    const post = (path: string, body: Record<string, string>, signature?: string) =>
      fetch(`${h.baseUrl}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...(signature ? { 'x-twilio-signature': signature } : {}) },
        body: new URLSearchParams(body).toString(),
      });
    expect((await post('/webhooks/twilio/voice', form)).status).toBe(403);
    expect((await post('/webhooks/twilio/voice', form, signTwilioRequest('wrong-token', `${h.baseUrl}/webhooks/twilio/voice`, form))).status).toBe(403);
    const tampered = signTwilioRequest(TEST_TWILIO.authToken, `${h.baseUrl}/webhooks/twilio/voice`, form);
    expect((await post('/webhooks/twilio/voice', { ...form, From: '+15550000000' }, tampered)).status).toBe(403);
    const recording = { AccountSid: TEST_TWILIO.accountSid, CallSid: form.CallSid, RecordingSid: 'RE' + '2'.repeat(32), RecordingUrl: `${h.fake.url}/x`, RecordingStatus: 'completed' };
    expect((await post('/webhooks/twilio/recording', recording, signTwilioRequest('wrong-token', `${h.baseUrl}/webhooks/twilio/recording`, recording))).status).toBe(403);
    const malformed = { ...recording, RecordingSid: 'not-a-sid' };
    expect((await post('/webhooks/twilio/recording', malformed, signTwilioRequest(TEST_TWILIO.authToken, `${h.baseUrl}/webhooks/twilio/recording`, malformed))).status).toBe(400);
    const noCaller = { AccountSid: TEST_TWILIO.accountSid, CallSid: form.CallSid };
    expect((await post('/webhooks/twilio/voice', noCaller, signTwilioRequest(TEST_TWILIO.authToken, `${h.baseUrl}/webhooks/twilio/voice`, noCaller))).status).toBe(400);
    for (const table of ['patients', 'calls', 'call_recordings', 'media_jobs']) expect(await count(table), table).toBe(0);
  });

  it('retries a download that fails (5xx, then a connection dropped mid-body) and keeps no partial file', async () => {
    h.fake.voice.enqueueMediaFault({ kind: 'status', status: 503 });
    h.fake.voice.enqueueMediaFault({ kind: 'drop' });
    await startWorker();
    const played = await playCall();
    const patientId = await patientIdOf(PATIENT);
    const recording = await settledRecording(patientId);
    expect(normaliseWords(recording.transcript.text)).toContain('pharmacy');
    expect(h.fake.voice.mediaRequests.filter((request) => request.recordingSid === played.recordingSids[0]).map((request) => request.outcome)).toEqual(['fault', 'fault', 'served']);
    const jobs = await listMediaJobs(h.database.db, recording.id);
    expect(jobs).toMatchObject([{ kind: 'download', state: 'done', attempts: 3 }, { kind: 'transcribe', state: 'done', attempts: 1 }]);
    const served = await fetch(`${h.baseUrl}${recording.mediaUrl}`, { headers: { authorization: `Bearer ${coordinator.token}` } });
    expect(Buffer.from(await served.arrayBuffer()).equals(await readFile(clip.path))).toBe(true);
  });

  it('marks a recording that cannot be downloaded as failed, visibly, after its attempts', async () => {
    for (let i = 0; i < 3; i++) h.fake.voice.enqueueMediaFault({ kind: 'status', status: 500 });
    await startWorker();
    await playCall();
    const recording = await settledRecording(await patientIdOf(PATIENT), 'failed');
    expect(recording.failureReason).toBe('download failed after 3 attempts: download answered HTTP 500');
    expect(recording.mediaUrl).toBeNull();
    expect(recording.transcript).toBeNull();
  });

  it('gives corrupt media an empty transcript with a reason', async () => {
    await startWorker();
    await playCall({ recordingPath: corrupt });
    const recording = await settledRecording(await patientIdOf(PATIENT));
    expect(recording.transcript).toMatchObject({ text: '', segments: [], emptyReason: 'unreadable-media' });
  });

  it('a job whose worker died is taken over when its lease runs out, and recorded once', async () => {
    await playCall();
    const dead = await claimMediaJobs(h.database.db, { workerId: 'dead-worker', limit: 10, leaseMs: 300 });
    expect(dead).toHaveLength(1);
    await startWorker({ leaseMs: 5_000 });
    const recording = await settledRecording(await patientIdOf(PATIENT));
    // The dead worker wakes up and tries to record its download: fenced off.
    const late = await completeDownload(h.database.db, { jobId: dead[0]!.jobId, workerId: 'dead-worker', attempts: dead[0]!.attempts }, {
      recordingId: recording.id,
      storageKey: 'recordings/late.wav',
      contentType: 'audio/x-wav',
      sizeBytes: 1,
      transcribeMaxAttempts: 3,
    });
    expect(late).toBe(false);
    const jobs = await listMediaJobs(h.database.db, recording.id);
    expect(jobs).toMatchObject([{ kind: 'download', state: 'done', attempts: 2 }, { kind: 'transcribe', state: 'done', attempts: 1 }]);
    expect(normaliseWords(recording.transcript.text)).toContain('insurance');
  });

  it('click-to-call rings the coordinator through the Calls API, then bridges to the patient, recorded the same way', async () => {
    await startWorker();
    await h.sendSms(PATIENT, 'Please call me');
    const patientId = await patientIdOf(PATIENT);
    const started = await h.api('POST', `/api/patients/${patientId}/calls`, { token: coordinator.token });
    expect(started.status).toBe(201);
    const created = h.fake.voice.calls.at(-1)!;
    expect(created).toMatchObject({ sid: started.json.callSid, to: COORDINATOR_PHONE, from: TEST_TWILIO.fromNumber });
    expect(created.url).toBe(`${h.baseUrl}/webhooks/twilio/voice/bridge?callId=${started.json.callId}`);

    const played = await h.fake.voice.playOutboundCall(created.sid);
    expect(played.steps[0]!.body).toContain(`<Number>${PATIENT}</Number>`);
    expect(played.steps[0]!.body).toContain('record="record-from-answer-dual"');
    const recording = await settledRecording(patientId);
    expect(normaliseWords(recording.transcript.text)).toContain('pharmacy');
    expect((await callItems(patientId))[0]).toMatchObject({ direction: 'outbound', status: 'completed', route: 'dial', durationSec: 7, participants: { patient: PATIENT, coordinatorPhone: COORDINATOR_PHONE } });
    const audit = await h.database.db.query(`SELECT 1 FROM audit_log WHERE action = 'call.start' AND patient_id = $1`, [patientId]);
    expect(audit.rowCount).toBe(1);

    const other = await h.createCoordinator({ name: 'Grace' });
    expect((await h.api('POST', `/api/patients/${patientId}/calls`, { token: other.token })).status).toBe(404);
  });
});
