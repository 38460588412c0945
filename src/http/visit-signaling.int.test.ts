import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { backends, type TestBackend } from '../test/databases.ts';
import { eventually, startHarness, type Harness } from '../test/harness.ts';
import { startOtherWeb, type OtherWeb } from '../test/other-web.ts';

// Two web servers on one database hold one visit's signaling between them, through plain WebSocket clients. On
// PostgreSQL the two servers are separate OS processes (src/main.ts --role web); PGlite is one process by design,
// so there they are two servers in this process on the one PGlite.
const SLOW_MACHINE_WAIT_MS = 45_000;

/** A signaling client: every message it received, in order, and how it was closed. */
class Client {
  readonly messages: any[] = [];
  closed: { code: number; reason: string } | undefined;
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (raw) => this.messages.push(JSON.parse(raw.toString())));
    ws.on('close', (code, reason) => (this.closed = { code, reason: reason.toString() }));
  }

  /** `cookie`: the coordinator's web app session, which is what authenticates the coordinator's side. */
  static async open(server: OtherWeb, visitId: string, cookie?: string): Promise<Client> {
    const ws = new WebSocket(`${server.url.replace(/^http/, 'ws')}/ws/visits/${visitId}`, cookie ? { headers: { cookie } } : undefined);
    const client = new Client(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return client;
  }

  send(message: unknown): void {
    this.ws.send(JSON.stringify(message));
  }

  types(): string[] {
    return this.messages.map((message) => message.type);
  }

  count(type: string): number {
    return this.types().filter((t) => t === type).length;
  }

  /** Waits until `n` messages of `type` have arrived; returns the n-th. */
  async received(type: string, n = 1): Promise<any> {
    await eventually(() => this.count(type) >= n, { timeoutMs: SLOW_MACHINE_WAIT_MS, what: `${type} #${n} (have ${this.types().join(', ')})` });
    return this.messages.filter((message) => message.type === type)[n - 1];
  }

  async closedWith(): Promise<{ code: number; reason: string }> {
    return eventually(() => this.closed, { timeoutMs: SLOW_MACHINE_WAIT_MS, what: 'the socket to close' });
  }

  async join(hello: { role: 'coordinator' | 'patient'; token?: string }): Promise<void> {
    this.send({ type: 'hello', ...hello });
    await this.received('welcome');
  }
}

/** Servers A and B on the harness's database: two more processes on PostgreSQL; on PGlite the harness's own server and a second one. */
async function startTwoWebs(backend: TestBackend, h: Harness, dir: string): Promise<[OtherWeb, OtherWeb]> {
  if (backend.name === 'postgres') return [await startOtherWeb(backend, h, join(dir, 'a')), await startOtherWeb(backend, h, join(dir, 'b'))];
  return [{ url: h.baseUrl, close: async () => {} }, await startOtherWeb(backend, h, join(dir, 'b'))];
}

describe.each(backends())('visit signaling across two web servers on one database ($name)', (backend) => {
  let h: Harness;
  let dir: string;
  let a: OtherWeb;
  let b: OtherWeb;
  const clients: Client[] = [];

  beforeEach(async () => {
    coordinatorToken = undefined;
    coordinatorCookie = undefined;
    dir = await mkdtemp(join(tmpdir(), 'visit-signaling-'));
    h = await startHarness(backend, { calls: { media: { kind: 'local', dir: join(dir, 'media') } } });
    [a, b] = await startTwoWebs(backend, h, dir);
  }, 120_000);
  afterEach(async () => {
    for (const client of clients.splice(0)) client.ws.terminate();
    await b?.close();
    await a?.close();
    await h?.close();
    await rm(dir, { recursive: true, force: true });
  }, 60_000);

  // Every socket carries the coordinator's session cookie unless anonymous (a patient's page authenticates by its token).
  const connect = async (server: OtherWeb, visitId: string, { anonymous = false } = {}) => {
    const client = await Client.open(server, visitId, anonymous ? undefined : coordinatorCookie);
    clients.push(client);
    return client;
  };

  let coordinatorToken: string | undefined;
  let coordinatorCookie: string | undefined;
  /** A new patient by SMS (routed to this test's one coordinator) and a visit with them; the join token from the invite. */
  async function startVisit(phone: string): Promise<{ coordinatorToken: string; visitId: string; joinToken: string }> {
    if (!coordinatorToken) {
      const ada = await h.createCoordinator({ name: 'Ada' });
      coordinatorToken = ada.token;
      const login = await fetch(`${h.baseUrl}/api/session/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: ada.email, password: ada.password }) });
      expect(login.status).toBe(200);
      coordinatorCookie = login.headers.get('set-cookie')!.split(';')[0]!;
    }
    expect((await h.sendSms(phone, 'Can we talk by video?')).status).toBe(200);
    const patientId = (await h.database.db.query<{ patient_id: string }>(`SELECT patient_id FROM channel_identities WHERE address = $1`, [phone])).rows[0]!.patient_id;
    const started = await h.api('POST', `/api/patients/${patientId}/visits`, { token: coordinatorToken });
    expect(started.status, started.text).toBe(201);
    const visitId = started.json.visitId as string;
    const invite = await h.database.db.query<{ body: string }>(`SELECT body FROM messages WHERE id = $1`, [started.json.invite.messageId]);
    return { coordinatorToken, visitId, joinToken: invite.rows[0]!.body.split('#t=')[1]!.trim() };
  }

  const connectionsOf = async (visitId: string) =>
    (await h.database.db.query<{ side: string; connection_id: string }>(`SELECT side, connection_id FROM visit_connections WHERE visit_id = $1 ORDER BY side`, [visitId])).rows;

  it('relays consent, one ready, a large offer and its answer, in order, between sockets on different servers; a reconnect replaces the old socket', async () => {
    const { coordinatorToken, visitId, joinToken } = await startVisit('+15551230001');

    const coordinator = await connect(a, visitId);
    await coordinator.join({ role: 'coordinator', token: coordinatorToken });
    // Sent before the patient is connected: dropped on purpose, never delivered later (see ARCHITECTURE §14). The
    // consent after it is handled after it (one message at a time per socket), so once it is logged, so is the drop.
    coordinator.send({ type: 'signal', data: { early: true } });
    coordinator.send({ type: 'consent' });
    await eventually(async () => (await h.database.db.query(`SELECT 1 FROM visits WHERE id = $1 AND coordinator_consent_at IS NOT NULL`, [visitId])).rowCount === 1, { what: 'coordinator consent' });
    expect((await h.database.db.query(`SELECT 1 FROM visit_signals`)).rowCount).toBe(0);

    const patient = await connect(b, visitId);
    await patient.join({ role: 'patient', token: joinToken });
    expect((await connectionsOf(visitId)).map((row) => row.side)).toEqual(['coordinator', 'patient']);
    patient.send({ type: 'consent' });
    expect(await coordinator.received('consent')).toEqual({ type: 'consent', side: 'patient' });
    await coordinator.received('ready');
    await patient.received('ready');

    // An offer far above NOTIFY's 8000-byte payload limit, A → B, intact; then the answer B → A.
    const sdp = 'v=0\r\n' + Array.from({ length: 400 }, (_, i) => `a=candidate:${i} 1 udp 2122260223 192.0.2.${i % 250} ${50000 + i} typ host\r\n`).join('');
    expect(sdp.length).toBeGreaterThan(20_000);
    coordinator.send({ type: 'signal', data: { description: { type: 'offer', sdp } } });
    const offer = await patient.received('signal');
    expect(offer).toEqual({ type: 'signal', data: { description: { type: 'offer', sdp } } });
    patient.send({ type: 'signal', data: { description: { type: 'answer', sdp: 'v=0\r\nanswer' } } });
    expect(await coordinator.received('signal')).toEqual({ type: 'signal', data: { description: { type: 'answer', sdp: 'v=0\r\nanswer' } } });

    // Per side, in the order sent.
    for (let i = 0; i < 20; i++) coordinator.send({ type: 'signal', data: { candidate: { n: i } } });
    await patient.received('signal', 21);
    expect(patient.messages.filter((m) => m.type === 'signal').slice(1).map((m) => m.data.candidate.n)).toEqual(Array.from({ length: 20 }, (_, i) => i));

    // Whatever came through after `ready` came after any second `ready` would have: there was exactly one each.
    expect(patient.types()).toEqual(['welcome', 'ready', ...Array(21).fill('signal')]);
    expect(coordinator.types()).toEqual(['welcome', 'consent', 'ready', 'signal']);
    expect(patient.messages.some((m) => m.data?.early)).toBe(false);

    // The patient reopens the link, now on server A: the socket on B is told and closed; the new pair gets ready.
    const [, oldPatientRow] = await connectionsOf(visitId);
    const patientAgain = await connect(a, visitId);
    await patientAgain.join({ role: 'patient', token: joinToken });
    expect(await patient.received('replaced')).toEqual({ type: 'replaced' });
    expect(await patient.closedWith()).toEqual({ code: 1000, reason: 'replaced by a new connection' });
    await patientAgain.received('ready');
    await coordinator.received('ready', 2);
    const [, newPatientRow] = await connectionsOf(visitId);
    expect(newPatientRow!.connection_id).not.toBe(oldPatientRow!.connection_id);
    patientAgain.send({ type: 'consent' });
    expect(await coordinator.received('consent', 2)).toEqual({ type: 'consent', side: 'patient' });
    coordinator.send({ type: 'signal', data: { description: { type: 'offer', sdp: 'v=0\r\nagain' } } });
    expect((await patientAgain.received('signal')).data.description.sdp).toBe('v=0\r\nagain');
    patientAgain.send({ type: 'bye' });
    await coordinator.received('bye');
    expect(patientAgain.types()).toEqual(['welcome', 'ready', 'signal']);
    expect(coordinator.count('ready')).toBe(2);
    expect(patient.count('signal')).toBe(21);

    const audited = await h.database.db.query<{ detail: any }>(`SELECT detail FROM audit_log WHERE action = 'visit.consent' ORDER BY id`);
    expect(audited.rows.map((row) => row.detail.side)).toEqual(['coordinator', 'patient', 'patient']);

    // Closing both leaves nothing behind: delivered signals were deleted as they went out.
    coordinator.ws.close();
    patientAgain.ws.close();
    await eventually(async () => (await connectionsOf(visitId)).length === 0, { what: 'connections removed', timeoutMs: SLOW_MACHINE_WAIT_MS });
    expect((await h.database.db.query(`SELECT 1 FROM visit_signals`)).rowCount).toBe(0);
  });

  it('sends exactly one ready when both sides consent, or both connect, at the same moment on different servers', async () => {
    const roundTrip = async (coordinator: Client, patient: Client, n: number) => {
      // After ready, one message each way: a second ready from either transaction would have arrived before it.
      coordinator.send({ type: 'signal', data: { ping: n } });
      await patient.received('signal');
      patient.send({ type: 'signal', data: { pong: n } });
      await coordinator.received('signal');
    };
    for (let round = 0; round < 3; round++) {
      const { coordinatorToken, visitId, joinToken } = await startVisit(`+1555123100${round}`);
      const coordinator = await connect(a, visitId);
      const patient = await connect(b, visitId);
      await Promise.all([coordinator.join({ role: 'coordinator', token: coordinatorToken }), patient.join({ role: 'patient', token: joinToken })]);
      coordinator.send({ type: 'consent' });
      patient.send({ type: 'consent' });
      await Promise.all([coordinator.received('ready'), patient.received('ready')]);
      await roundTrip(coordinator, patient, round);
      expect(coordinator.types(), `round ${round}`).toEqual(['welcome', 'consent', 'ready', 'signal']);
      expect(patient.types(), `round ${round}`).toEqual(['welcome', 'consent', 'ready', 'signal']);

      // Both pages reload at once, each on the other server; consent is already logged, so the joins decide ready.
      coordinator.ws.close();
      patient.ws.close();
      await eventually(async () => (await connectionsOf(visitId)).length === 0, { what: 'both left', timeoutMs: SLOW_MACHINE_WAIT_MS });
      const [coordinatorAgain, patientAgain] = await Promise.all([connect(b, visitId), connect(a, visitId)]);
      coordinatorAgain.send({ type: 'hello', role: 'coordinator', token: coordinatorToken });
      patientAgain.send({ type: 'hello', role: 'patient', token: joinToken });
      await Promise.all([coordinatorAgain.received('ready'), patientAgain.received('ready')]);
      await roundTrip(coordinatorAgain, patientAgain, round);
      expect(coordinatorAgain.types(), `round ${round}`).toEqual(['welcome', 'ready', 'signal']);
      expect(patientAgain.types(), `round ${round}`).toEqual(['welcome', 'ready', 'signal']);
    }
  });

  it('serves the visit pages with a strict CSP, no inline script, and no API token in the page', async () => {
    const { visitId } = await startVisit('+15551230009');
    for (const path of [`/visits/${visitId}/host`, `/visit/${visitId}`]) {
      const page = await fetch(`${h.baseUrl}${path}`);
      const csp = page.headers.get('content-security-policy') ?? '';
      expect(csp).toContain("frame-ancestors 'none'");
      expect(csp).toContain("script-src 'self'");
      expect(csp).not.toContain('unsafe-inline');
      const html = await page.text();
      expect(html).not.toMatch(/<script>|<script(?![^>]*\bsrc=)[^>]*>|<style|\bstyle=/);
      expect(html).toContain('<script src="/visits/assets/visit.js"></script>');
    }
    const script = await fetch(`${h.baseUrl}/visits/assets/visit.js`);
    expect(script.headers.get('content-type')).toContain('text/javascript');
    const source = await script.text();
    expect(source).not.toContain("get('token')");
    expect(source).toContain('/api/session');
  });

  it('closes a bad hello with 1008 and changes nothing', async () => {
    const { coordinatorToken, visitId, joinToken } = await startVisit('+15551230002');
    const coordinator = await connect(a, visitId);
    await coordinator.join({ role: 'coordinator', token: coordinatorToken });
    const before = {
      connections: await connectionsOf(visitId),
      visit: (await h.database.db.query(`SELECT * FROM visits WHERE id = $1`, [visitId])).rows,
      audit: (await h.database.db.query(`SELECT count(*)::int AS n FROM audit_log`)).rows,
    };

    const attempts: Array<{ server: OtherWeb; first: unknown; error: string }> = [
      { server: b, first: { type: 'hello', role: 'patient', token: 'x'.repeat(43) }, error: 'the link is invalid or has expired' },
      { server: b, first: { type: 'hello', role: 'coordinator', token: 'not-a-token' }, error: 'not allowed' },
      // The coordinator's API token is no longer a way in: only the web app's session cookie is.
      { server: a, first: { type: 'hello', role: 'coordinator', token: coordinatorToken }, error: 'not allowed' },
      { server: b, first: { type: 'hello', role: 'coordinator' }, error: 'not allowed' },
      { server: a, first: { type: 'hello', role: 'coordinator', token: joinToken }, error: 'not allowed' },
      { server: b, first: { type: 'consent' }, error: 'the first message must be hello' },
      { server: a, first: { type: 'signal', data: { description: { type: 'offer', sdp: 'v=0' } } }, error: 'the first message must be hello' },
    ];
    for (const attempt of attempts) {
      const client = await connect(attempt.server, visitId, { anonymous: true });
      client.send(attempt.first);
      client.send({ type: 'consent' });
      expect(await client.closedWith()).toEqual({ code: 1008, reason: attempt.error });
      expect(client.messages).toEqual([{ type: 'error', message: attempt.error }]);
    }
    const garbled = await connect(b, visitId);
    garbled.ws.send('{not json');
    expect((await garbled.closedWith()).code).toBe(1008);

    expect(await connectionsOf(visitId)).toEqual(before.connections);
    expect((await h.database.db.query(`SELECT * FROM visits WHERE id = $1`, [visitId])).rows).toEqual(before.visit);
    expect((await h.database.db.query(`SELECT count(*)::int AS n FROM audit_log`)).rows).toEqual(before.audit);
    expect((await h.database.db.query(`SELECT 1 FROM visit_signals`)).rowCount).toBe(0);
    expect(coordinator.types()).toEqual(['welcome']);

    // A socket that floods is closed rather than queueing database writes without bound.
    const flooder = await connect(b, visitId);
    await flooder.join({ role: 'patient', token: joinToken });
    for (let i = 0; i < 2_000; i++) flooder.send({ type: 'signal', data: { candidate: { n: i } } });
    expect(await flooder.closedWith()).toEqual({ code: 1008, reason: 'too many messages' });
    await eventually(async () => (await connectionsOf(visitId)).length === 1, { what: 'the flooder gone', timeoutMs: SLOW_MACHINE_WAIT_MS });

    // The real patient still gets through afterwards.
    const patient = await connect(b, visitId);
    await patient.join({ role: 'patient', token: joinToken });
    patient.send({ type: 'consent' });
    expect(await coordinator.received('consent')).toEqual({ type: 'consent', side: 'patient' });

    // Server B stops (SIGTERM on PostgreSQL): its sockets leave signaling, so A's coordinator is alone again.
    await b.close();
    expect((await connectionsOf(visitId)).map((row) => row.side)).toEqual(['coordinator']);
  });
});
