import { writeFile, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import twilio from 'twilio';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTwilioClient } from '../channels/twilio-client.ts';
import { startFakeTwilio, type FakeTwilio } from './fake-twilio.ts';
import { parseTwiml } from './fake-twilio-voice.ts';

const SID = 'AC' + 'b'.repeat(32);
const TOKEN = 'voice_token_0123456789abcdef';

describe('fake Twilio voice', () => {
  let fake: FakeTwilio;
  let dir: string;
  let server: Server | undefined;
  beforeEach(async () => {
    fake = await startFakeTwilio({ accountSid: SID, authToken: TOKEN });
    dir = await mkdtemp(join(tmpdir(), 'fake-voice-'));
  });
  afterEach(async () => {
    await fake.close();
    if (server) await new Promise<void>((resolve) => server!.close(() => resolve()));
    server = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  /** A stand-in for our app: checks every signature with twilio-node and answers with scripted TwiML. */
  async function app(answers: Record<string, string>): Promise<{ url: string; seen: Array<{ path: string; form: Record<string, string>; valid: boolean }> }> {
    const seen: Array<{ path: string; form: Record<string, string>; valid: boolean }> = [];
    server = createServer((req, res) => {
      let raw = '';
      req.on('data', (chunk) => (raw += chunk));
      req.on('end', () => {
        const form = Object.fromEntries(new URLSearchParams(raw));
        const url = `http://127.0.0.1:${(server!.address() as { port: number }).port}${req.url}`;
        seen.push({ path: req.url!, form, valid: twilio.validateRequest(TOKEN, String(req.headers['x-twilio-signature']), url, form) });
        res.writeHead(200, { 'content-type': 'text/xml' }).end(answers[req.url!.split('?')[0]!] ?? '<Response/>');
      });
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, seen };
  }

  it('accepts Calls.create from the twilio SDK and records what crossed the wire', async () => {
    const client = createTwilioClient({ accountSid: SID, authToken: TOKEN, apiBase: fake.url });
    const call = await client.calls.create({ to: '+15551230000', from: '+15005550006', url: 'https://example.test/bridge?callId=1', statusCallback: 'https://example.test/status' });
    expect(call.sid).toMatch(/^CA[0-9a-f]{32}$/);
    expect(call.status).toBe('queued');
    expect(fake.voice.calls).toMatchObject([{ sid: call.sid, to: '+15551230000', from: '+15005550006', url: 'https://example.test/bridge?callId=1', statusCallback: 'https://example.test/status' }]);
    await expect(client.calls.create({ to: 'not-a-number', from: '+15005550006', url: 'https://example.test/x' })).rejects.toMatchObject({ status: 400, code: 21211 });
    const wrong = createTwilioClient({ accountSid: SID, authToken: 'wrong', apiBase: fake.url });
    await expect(wrong.calls.create({ to: '+15551230000', from: '+15005550006', url: 'https://example.test/x' })).rejects.toMatchObject({ status: 401 });
  });

  it('plays a call: signed webhooks in order, a recording served only with Basic auth, faults on demand', async () => {
    const audio = join(dir, 'a.wav');
    await writeFile(audio, Buffer.from('RIFF-not-really-audio'));
    fake.voice.setRecordingAudio(audio);
    const ours = await app({
      '/voice': '<Response><Say>hi</Say><Dial record="record-from-answer-dual" action="/dial" recordingStatusCallback="/rec"><Number>+15557654321</Number></Dial></Response>',
      '/dial': '<Response><Hangup/></Response>',
    });
    const played = await fake.voice.playInboundCall({ voiceUrl: `${ours.url}/voice`, from: '+15551234567', to: '+15005550006' });
    expect(played.verbs).toEqual(['Say', 'Dial:answer', 'Hangup']);
    expect(ours.seen.map((s) => s.path)).toEqual(['/voice', '/dial', '/rec']);
    expect(ours.seen.every((s) => s.valid)).toBe(true);
    expect(ours.seen[1]!.form).toMatchObject({ DialCallStatus: 'completed', CallSid: played.callSid });
    const recordingUrl = ours.seen[2]!.form.RecordingUrl!;
    expect(ours.seen[2]!.form).toMatchObject({ RecordingStatus: 'completed', RecordingSource: 'DialVerb', RecordingChannels: '2', RecordingSid: played.recordingSids[0] });

    expect((await fetch(`${recordingUrl}.wav`)).status).toBe(401);
    const auth = { authorization: `Basic ${Buffer.from(`${SID}:${TOKEN}`).toString('base64')}` };
    const ok = await fetch(`${recordingUrl}.wav`, { headers: auth });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toBe('audio/x-wav');
    expect(await ok.text()).toBe('RIFF-not-really-audio');
    fake.voice.enqueueMediaFault({ kind: 'status', status: 503 });
    expect((await fetch(recordingUrl, { headers: auth })).status).toBe(503);
    fake.voice.enqueueMediaFault({ kind: 'drop' });
    await expect(fetch(recordingUrl, { headers: auth }).then((response) => response.arrayBuffer())).rejects.toThrow();
    expect(fake.voice.mediaRequests.map((request) => request.outcome)).toEqual(['unauthorized', 'served', 'fault', 'fault']);
  });

  it('follows an unanswered <Dial> to the TwiML its action returns', async () => {
    fake.voice.setRecordingAudio(join(dir, 'unused.wav'));
    const ours = await app({
      '/voice': '<Response><Dial action="/dial"><Number>+15557654321</Number></Dial></Response>',
      '/dial': '<Response><Record action="/done" recordingStatusCallback="/rec"/></Response>',
      '/done': '<Response><Hangup/></Response>',
    });
    const played = await fake.voice.playInboundCall({ voiceUrl: `${ours.url}/voice`, from: '+15551234567', to: '+15005550006', dial: 'busy' });
    expect(played.verbs).toEqual(['Dial:busy', 'Record', 'Hangup']);
    expect(ours.seen.map((s) => `${s.path} ${s.form.DialCallStatus ?? s.form.RecordingSource ?? ''}`.trim())).toEqual(['/voice', '/dial busy', '/done', '/rec RecordVerb']);
  });

  it('reads the flat TwiML twilio-node writes', () => {
    const response = new twilio.twiml.VoiceResponse();
    response.say('a & b');
    response.dial({ action: 'https://x.test/a?b=1&c=2' }).number('+15551230000');
    response.hangup();
    expect(parseTwiml(response.toString())).toEqual([
      { name: 'Say', attrs: {}, body: 'a &amp; b' },
      { name: 'Dial', attrs: { action: 'https://x.test/a?b=1&c=2' }, body: '<Number>+15551230000</Number>' },
      { name: 'Hangup', attrs: {}, body: '' },
    ]);
    expect(() => parseTwiml('<html/>')).toThrow(/not TwiML/);
  });
});
