import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { backends } from '../test/databases.ts';
import { eventually, startHarness, type Harness } from '../test/harness.ts';

// Deadlines sized for a loaded 2-core machine; nothing here asserts speed.
const WAIT_MS = 20_000;

/** An SSE request over fetch: resolved once the answer's headers are in, so a 200 means the server holds the slot. */
async function openStream(url: string, token: string): Promise<{ status: number; json: any; close(): void }> {
  const controller = new AbortController();
  const response = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: controller.signal });
  if (response.status === 200) {
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    return { status: 200, json: null, close: () => controller.abort() };
  }
  return { status: response.status, json: await response.json(), close: () => {} };
}

describe.each(backends())('caps on open streams and visit sockets ($name)', (backend) => {
  let h: Harness;
  let dir: string;
  const open: Array<{ close(): void }> = [];
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'connection-limits-'));
    h = await startHarness(backend, {
      webchat: true,
      calls: { media: { kind: 'local', dir: join(dir, 'media') } },
      app: {
        connectionLimits: {
          liveStreamsPerCoordinator: 2,
          liveStreamsPerProcess: 3,
          webchatStreamsPerPatient: 2,
          webchatStreamsPerProcess: 3,
          visitSocketsPerProcess: 2,
          visitHelloTimeoutMs: 2_000,
        },
      },
    });
  });
  afterEach(async () => {
    for (const connection of open.splice(0)) connection.close();
    await h.close();
    await rm(dir, { recursive: true, force: true });
  });

  const stream = async (path: string, token: string) => {
    const opened = await openStream(h.baseUrl + path, token);
    open.push(opened);
    return opened;
  };

  async function patientBySms(phone: string): Promise<string> {
    expect((await h.sendSms(phone, 'hello')).status).toBe(200);
    return (await h.database.db.query<{ patient_id: string }>(`SELECT patient_id FROM channel_identities WHERE address = $1`, [phone])).rows[0]!.patient_id;
  }

  it('/api/live: the stream over a coordinator\'s cap gets 429 while another coordinator connects; over the process cap, 429 for anyone; a closed stream frees its slot', async () => {
    const [ada, bob] = [await h.createCoordinator({ name: 'Ada' }), await h.createCoordinator({ name: 'Bob' })];
    const adaFirst = await stream('/api/live', ada.token);
    expect(adaFirst.status).toBe(200);
    expect((await stream('/api/live', ada.token)).status).toBe(200);

    const refused = await stream('/api/live', ada.token);
    expect(refused.status).toBe(429);
    expect(refused.json).toMatchObject({ code: 'too_many_streams', details: { limit: 'per_caller' } });
    expect(refused.json.message).toMatch(/at most 2 live streams/);

    expect((await stream('/api/live', bob.token)).status).toBe(200);
    // Three open: Bob's second is within his own cap but over the process's.
    const busy = await stream('/api/live', bob.token);
    expect(busy.status).toBe(429);
    expect(busy.json).toMatchObject({ code: 'too_many_streams', details: { limit: 'per_process' } });

    adaFirst.close();
    await eventually(async () => (await stream('/api/live', ada.token)).status === 200, { timeoutMs: WAIT_MS, what: "Ada's slot to be released" });
  });

  it('web chat: the stream over a patient\'s cap gets 429, however many links they have, while another patient connects; over the process cap, 429', async () => {
    const ada = await h.createCoordinator({ name: 'Ada' });
    const linkFor = async (patientId: string) => {
      const link = await h.api('POST', `/api/patients/${patientId}/webchat-link`, { token: ada.token, body: {} });
      expect(link.status, link.text).toBe(201);
      return decodeURIComponent(new URL(link.json.url).hash.slice(1));
    };
    const pat = await patientBySms('+15557770001');
    const [patLink, patOtherLink] = [await linkFor(pat), await linkFor(pat)];
    const quinn = await linkFor(await patientBySms('+15557770002'));

    const first = await stream('/chat/api/stream', patLink);
    expect(first.status).toBe(200);
    expect((await stream('/chat/api/stream', patLink)).status).toBe(200);
    const refused = await stream('/chat/api/stream', patOtherLink);
    expect(refused.status).toBe(429);
    expect(refused.json).toMatchObject({ code: 'too_many_streams', details: { limit: 'per_caller' } });

    expect((await stream('/chat/api/stream', quinn)).status).toBe(200);
    const busy = await stream('/chat/api/stream', quinn);
    expect(busy.status).toBe(429);
    expect(busy.json).toMatchObject({ code: 'too_many_streams', details: { limit: 'per_process' } });

    first.close();
    await eventually(async () => (await stream('/chat/api/stream', patOtherLink)).status === 200, { timeoutMs: WAIT_MS, what: "the patient's slot to be released" });
  });

  /** A signaling socket: what it received, and how it was closed. */
  async function visitSocket(visitId: string, cookie?: string) {
    // The coordinator's side authenticates with the web app's session cookie on the upgrade; a patient's by its token.
    const ws = new WebSocket(`${h.baseUrl.replace(/^http/, 'ws')}/ws/visits/${visitId}`, cookie ? { headers: { cookie } } : undefined);
    const socket = { ws, messages: [] as any[], closed: undefined as { code: number; reason: string } | undefined, close: () => ws.terminate() };
    ws.on('message', (raw) => socket.messages.push(JSON.parse(raw.toString())));
    ws.on('close', (code, reason) => (socket.closed = { code, reason: reason.toString() }));
    open.push(socket);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return socket;
  }
  const closedWith = (socket: Awaited<ReturnType<typeof visitSocket>>) => eventually(() => socket.closed, { timeoutMs: WAIT_MS, what: 'the socket to close' });
  const welcomed = (socket: Awaited<ReturnType<typeof visitSocket>>) =>
    eventually(() => socket.messages.some((message) => message.type === 'welcome'), { timeoutMs: WAIT_MS, what: 'welcome' });

  async function startVisit(): Promise<{ coordinatorCookie: string; visitId: string; joinToken: string }> {
    const ada = await h.createCoordinator({ name: 'Ada' });
    const login = await fetch(`${h.baseUrl}/api/session/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: ada.email, password: ada.password }) });
    expect(login.status).toBe(200);
    const coordinatorCookie = login.headers.get('set-cookie')!.split(';')[0]!;
    const patientId = await patientBySms('+15557770003');
    const started = await h.api('POST', `/api/patients/${patientId}/visits`, { token: ada.token });
    expect(started.status, started.text).toBe(201);
    const invite = await h.database.db.query<{ body: string }>(`SELECT body FROM messages WHERE id = $1`, [started.json.invite.messageId]);
    return { coordinatorCookie, visitId: started.json.visitId, joinToken: invite.rows[0]!.body.split('#t=')[1]!.trim() };
  }

  it('visit signaling: a socket silent past the hello deadline is closed with 1008; one that said hello stays open and served', async () => {
    const { coordinatorCookie, visitId } = await startVisit();
    const coordinator = await visitSocket(visitId, coordinatorCookie);
    coordinator.ws.send(JSON.stringify({ type: 'hello', role: 'coordinator' }));
    await welcomed(coordinator);

    // Opened after the coordinator's: had the coordinator's deadline not been cleared by its hello, it fired first.
    const silent = await visitSocket(visitId);
    expect(await closedWith(silent)).toEqual({ code: 1008, reason: 'no hello within 2000 ms' });
    expect(coordinator.closed).toBeUndefined();
    coordinator.ws.send(JSON.stringify({ type: 'consent' }));
    await eventually(async () => (await h.database.db.query(`SELECT 1 FROM visits WHERE id = $1 AND coordinator_consent_at IS NOT NULL`, [visitId])).rowCount === 1, { timeoutMs: WAIT_MS, what: 'consent recorded' });
  });

  it('visit signaling: a socket over the process cap is closed with 1008; the open ones stay; a closed socket frees its slot', async () => {
    const { coordinatorCookie, visitId, joinToken } = await startVisit();
    const coordinator = await visitSocket(visitId, coordinatorCookie);
    coordinator.ws.send(JSON.stringify({ type: 'hello', role: 'coordinator' }));
    const patient = await visitSocket(visitId);
    patient.ws.send(JSON.stringify({ type: 'hello', role: 'patient', token: joinToken }));
    await welcomed(coordinator);
    await welcomed(patient);

    const refused = await visitSocket(visitId);
    expect(await closedWith(refused)).toEqual({ code: 1008, reason: 'too many visit connections on this server; retry shortly' });
    expect(refused.messages).toEqual([{ type: 'error', message: 'too many visit connections on this server; retry shortly' }]);
    expect(coordinator.closed).toBeUndefined();
    expect(patient.closed).toBeUndefined();

    patient.ws.close();
    await closedWith(patient);
    const rejoined = await eventually(async () => {
      const candidate = await visitSocket(visitId);
      candidate.ws.send(JSON.stringify({ type: 'hello', role: 'patient', token: joinToken }));
      await eventually(() => candidate.closed || candidate.messages.some((message) => message.type === 'welcome'), { timeoutMs: WAIT_MS, what: 'welcome or close' });
      return candidate.closed ? undefined : candidate;
    }, { timeoutMs: WAIT_MS, what: 'a free slot after the patient left' });
    expect(rejoined.messages.map((message) => message.type)).toContain('welcome');
  });
});
