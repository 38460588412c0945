import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CARE_KEY_WORDS } from '../test/audio/care-sentences.ts';
import { assertTranscriptionToolsInstalled, synthesizeSentences, type SpokenClip } from '../test/audio/fixtures.ts';
import { backends } from '../test/databases.ts';
import { eventually, startHarness, TEST_TWILIO, type Harness } from '../test/harness.ts';
import { startOtherWeb, type OtherWeb } from '../test/other-web.ts';
import { createPocketSphinxTranscriber } from '../transcription/pocketsphinx.ts';
import { runProcess } from '../transcription/run-process.ts';
import { normaliseWords } from '../transcription/wer.ts';
import { createMediaStorage, DEFAULT_CALLS_CONFIG, startCallsWorker } from './index.ts';
import type { MediaJobWorker } from './media-jobs.ts';

// Two real Chromium processes (Debian's chromium, driven by playwright-core) hold a visit over loopback. Each
// browser's microphone is a file: the patient speaks a flite sentence, the coordinator is silent. The two pages
// are on different web servers on one database, so their signaling crosses between servers: on PostgreSQL the
// patient's server is another OS process (src/main.ts --role web); on PGlite, which is one process by design, a
// second server in this process on the same PGlite.
const SENTENCE = 'Can I reschedule my appointment to Thursday afternoon';
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const transcriber = createPocketSphinxTranscriber();
let dir: string;
let patientVoice: SpokenClip;
let silence: string;

beforeAll(async () => {
  assertTranscriptionToolsInstalled();
  dir = await mkdtemp(join(tmpdir(), 'visit-audio-'));
  [patientVoice] = (await synthesizeSentences(dir, [SENTENCE])) as [SpokenClip];
  silence = join(dir, 'silence.wav');
  const made = await runProcess('ffmpeg', ['-nostdin', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'anullsrc=r=16000:cl=mono', '-t', '5', '-c:a', 'pcm_s16le', silence]);
  expect(made.exitCode, made.stderr).toBe(0);
  await transcriber.prepare();
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const launch = (audioFile: string): Promise<Browser> =>
  chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      `--use-file-for-fake-audio-capture=${audioFile}`,
      '--autoplay-policy=no-user-gesture-required',
      // Offer plain host candidates rather than mDNS names, which nothing resolves on this loopback test.
      '--disable-features=WebRtcHideLocalIpsWithMdns',
    ],
  });

/** Signs the page's browser into the web app (the session cookie the host page runs on), as a coordinator would. */
async function signInPage(page: Page, baseUrl: string, who: { email: string; password: string }): Promise<void> {
  await page.goto(`${baseUrl}/visits/assets/visit.css`);
  const status = await page.evaluate(
    async ({ email, password }) => (await fetch('/api/session/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, password }) })).status,
    { email: who.email, password: who.password },
  );
  expect(status).toBe(200);
}

describe.each(backends())('video visit between two browsers on two web servers ($name)', (backend) => {
  let h: Harness;
  /** The patient's web server; the coordinator's is the harness's. */
  let other: OtherWeb;
  let mediaDir: string;
  let otherDir: string;
  let worker: MediaJobWorker | undefined;
  let browsers: Browser[];

  beforeEach(async () => {
    mediaDir = await mkdtemp(join(tmpdir(), 'visit-media-'));
    otherDir = await mkdtemp(join(tmpdir(), 'visit-other-web-'));
    h = await startHarness(backend, { calls: { media: { kind: 'local', dir: mediaDir } } });
    other = await startOtherWeb(backend, h, otherDir);
    browsers = [];
  });
  afterEach(async () => {
    for (const browser of browsers) await browser.close().catch(() => {});
    await worker?.stop();
    worker = undefined;
    await other?.close();
    await h.close();
    await rm(mediaDir, { recursive: true, force: true });
    await rm(otherDir, { recursive: true, force: true });
  });

  it('invites by SMS, needs both consents, uploads across a forced disconnect, and transcribes what the patient said', { timeout: 240_000 }, async () => {
    const coordinator = await h.createCoordinator({ name: 'Ada' });
    await h.sendSms('+15551234567', 'Can we talk by video?');
    const patientId = (await h.database.db.query<{ patient_id: string }>(`SELECT patient_id FROM channel_identities`)).rows[0]!.patient_id;
    await h.startRelay();
    worker = await startCallsWorker({
      db: h.database.db,
      logger: pino({ level: 'silent' }),
      config: { ...DEFAULT_CALLS_CONFIG, media: { kind: 'local', dir: mediaDir } },
      twilio: { ...TEST_TWILIO, apiBase: h.fake.url },
      storage: await createMediaStorage({ kind: 'local', dir: mediaDir }),
      transcriber,
      overrides: { pollMs: 100 },
    });

    const started = await h.api('POST', `/api/patients/${patientId}/visits`, { token: coordinator.token });
    expect(started.status).toBe(201);
    const { visitId } = started.json;
    const invite = await eventually(() => h.fake.received.find((message) => message.body.includes(`/visit/${visitId}#t=`)), { what: 'the join link by SMS' });
    expect(invite.to).toBe('+15551234567');
    // The link names the public base URL; behind a load balancer the patient may land on any web process.
    const joinUrl = /https?:\/\/\S+/.exec(invite.body)![0].replace(h.baseUrl, other.url);
    expect(joinUrl.startsWith(other.url)).toBe(true);

    // Nothing is recorded before consent.
    const early = await fetch(`${h.baseUrl}/api/visits/${visitId}/recording/chunks/0`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${coordinator.token}`, 'content-type': 'video/webm' },
      body: Buffer.from([0x1a, 0x45, 0xdf, 0xa3, 0, 0]),
    });
    expect(early.status).toBe(409);
    expect((await early.json()).code).toBe('consent_required');

    const patientBrowser = await launch(patientVoice.path);
    const coordinatorBrowser = await launch(silence);
    browsers.push(patientBrowser, coordinatorBrowser);
    const patientPage = await patientBrowser.newPage();
    const coordinatorPage = await coordinatorBrowser.newPage();

    // The forced disconnect: the first attempts at chunks 2 and 3 die with a reset connection.
    const dropped: string[] = [];
    await coordinatorPage.route('**/recording/chunks/*', async (route) => {
      const index = Number(route.request().url().split('/').pop());
      if ((index === 2 || index === 3) && !dropped.includes(String(index))) {
        dropped.push(String(index));
        return route.abort('connectionreset');
      }
      return route.continue();
    });

    await patientPage.goto(joinUrl);
    expect(patientPage.url().startsWith(other.url)).toBe(true);
    await signInPage(coordinatorPage, h.baseUrl, coordinator);
    await coordinatorPage.goto(`${h.baseUrl}/visits/${visitId}/host`);
    expect(await patientPage.textContent('#notice')).toContain('This visit is recorded');
    expect(await coordinatorPage.textContent('#notice')).toContain('This visit is recorded');
    await patientPage.click('#consent');
    await coordinatorPage.click('#consent');

    const state = () => coordinatorPage.evaluate(() => (window as any).visitState);
    await eventually(async () => (await state()).recording, { timeoutMs: 30_000, what: 'recording started' }).catch(async (error) => {
      throw new Error(`coordinator: ${JSON.stringify(await state())}; patient: ${JSON.stringify(await patientPage.evaluate(() => (window as any).visitState))}`, { cause: error });
    });
    await eventually(async () => (await state()).chunksUploaded >= 9, { timeoutMs: 30_000, what: '9 chunks uploaded' });
    const completed = await coordinatorPage.evaluate(() => (window as any).endVisit());
    expect(completed.status, JSON.stringify(completed)).toBe(201);
    const final = await state();
    expect(final.uploadFailures).toBeGreaterThanOrEqual(2);
    expect(dropped).toEqual(['2', '3']);
    expect(final.chunksUploaded).toBe(final.chunksRecorded);

    const visit = await eventually(
      async () => {
        const items = (await h.api('GET', `/api/patients/${patientId}/timeline`, { token: coordinator.token })).json.items;
        const item = items.find((entry: any) => entry.type === 'visit');
        return item?.recordings[0]?.status === 'transcribed' ? item : undefined;
      },
      // Generous: on a loaded 2-core machine the decode of the visit competes with everything else running.
      { timeoutMs: 150_000, what: 'visit transcribed' },
    );
    expect(visit).toMatchObject({ status: 'ended', coordinatorId: coordinator.id });
    expect(visit.consent.coordinatorAt).not.toBeNull();
    expect(visit.consent.patientAt).not.toBeNull();
    const recording = visit.recordings[0];
    expect(recording).toMatchObject({ kind: 'visit', contentType: 'video/webm' });
    const words = normaliseWords(recording.transcript.text);
    for (const key of CARE_KEY_WORDS[SENTENCE]!) expect(words, recording.transcript.text).toContain(key);

    const consents = await h.database.db.query<{ detail: any }>(`SELECT detail FROM audit_log WHERE action = 'visit.consent' ORDER BY id`);
    expect(consents.rows.map((row) => row.detail.side).sort()).toEqual(['coordinator', 'patient']);
    const media = await fetch(`${h.baseUrl}${recording.mediaUrl}`, { headers: { authorization: `Bearer ${coordinator.token}`, range: 'bytes=0-3' } });
    expect(media.status).toBe(206);
    expect(Buffer.from(await media.arrayBuffer())).toEqual(Buffer.from([0x1a, 0x45, 0xdf, 0xa3]));
  });

  it('keeps the chunks already sent when the coordinator’s tab closes mid-visit, and assembles them', { timeout: 240_000 }, async () => {
    const coordinator = await h.createCoordinator({ name: 'Ada' });
    await h.sendSms('+15551234567', 'hello');
    const patientId = (await h.database.db.query<{ patient_id: string }>(`SELECT patient_id FROM channel_identities`)).rows[0]!.patient_id;
    const started = await h.api('POST', `/api/patients/${patientId}/visits`, { token: coordinator.token });
    const { visitId } = started.json;
    const token = (await h.database.db.query<{ body: string }>(`SELECT body FROM messages WHERE direction = 'outbound'`)).rows[0]!.body.split('#t=')[1]!;
    const [patientBrowser, coordinatorBrowser] = [await launch(patientVoice.path), await launch(silence)];
    browsers.push(patientBrowser, coordinatorBrowser);
    const patientPage = await patientBrowser.newPage();
    const coordinatorPage = await coordinatorBrowser.newPage();
    await patientPage.goto(`${other.url}/visit/${visitId}#t=${token}`);
    await signInPage(coordinatorPage, h.baseUrl, coordinator);
    await coordinatorPage.goto(`${h.baseUrl}/visits/${visitId}/host`);
    await patientPage.click('#consent');
    await coordinatorPage.click('#consent');
    await eventually(async () => (await coordinatorPage.evaluate(() => (window as any).visitState.chunksUploaded)) >= 4, { timeoutMs: 30_000, what: '4 chunks uploaded' });
    await coordinatorPage.close();

    const kept = await h.api('GET', `/api/visits/${visitId}/recording/chunks`, { token: coordinator.token });
    expect(kept.json.chunks.length).toBeGreaterThanOrEqual(4);
    const completed = await h.api('POST', `/api/visits/${visitId}/recording/complete`, { token: coordinator.token, body: {} });
    expect(completed.status).toBe(201);
    expect(completed.json.sizeBytes).toBe(kept.json.chunks.filter((chunk: any, i: number) => chunk.index === i).reduce((sum: number, chunk: any) => sum + chunk.sizeBytes, 0));
    const again = await h.api('POST', `/api/visits/${visitId}/recording/complete`, { token: coordinator.token, body: {} });
    expect(again.status).toBe(200);
    expect(again.json.recordingId).toBe(completed.json.recordingId);
  });

  it('refuses a join link with a wrong token', async () => {
    const coordinator = await h.createCoordinator({ name: 'Ada' });
    await h.sendSms('+15551234567', 'hello');
    const patientId = (await h.database.db.query<{ patient_id: string }>(`SELECT patient_id FROM channel_identities`)).rows[0]!.patient_id;
    const started = await h.api('POST', `/api/patients/${patientId}/visits`, { token: coordinator.token });
    const browser = await launch(silence);
    browsers.push(browser);
    const page = await browser.newPage();
    await page.goto(`${other.url}/visit/${started.json.visitId}#t=${'x'.repeat(43)}`);
    await page.click('#consent');
    await eventually(async () => (await page.evaluate(() => (window as any).visitState.error)) === 'the link is invalid or has expired', { what: 'refusal' });
    const visit = await h.database.db.query<{ patient_consent_at: Date | null }>(`SELECT patient_consent_at FROM visits`);
    expect(visit.rows[0]!.patient_consent_at).toBeNull();
  });
});
