import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { EventSource } from 'eventsource';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { issueWebchatLink } from '../db/webchat-links.ts';
import { startWeb } from '../services/web.ts';
import { backends, isPostgresAvailable, postgresBackend } from '../test/databases.ts';
import { eventually, freePort, startHarness, TEST_TWILIO, TEST_WEBCHAT_SECRET, type Harness } from '../test/harness.ts';

// Polling deadlines and test time limits sized for a loaded 2-core CI machine; nothing here asserts speed.
const SLOW_MACHINE_WAIT_MS = 45_000;
vi.setConfig({ testTimeout: 180_000, hookTimeout: 180_000 });

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

interface StreamEvent {
  lastEventId: string;
  seq: number;
  id: string;
  direction: 'inbound' | 'outbound';
  body: string;
  clientMessageId: string | null;
}

/** A real SSE client (the `eventsource` package, WHATWG semantics: reconnects with Last-Event-ID). */
function openStream(baseUrl: string, token: string, query = '') {
  const events: StreamEvent[] = [];
  const statuses: number[] = [];
  const lastEventIds: Array<string | undefined> = [];
  const source = new EventSource(`${baseUrl}/chat/api/stream${query}`, {
    fetch: async (input, init) => {
      lastEventIds.push((init.headers as Record<string, string>)['Last-Event-ID']);
      const response = await fetch(input, { ...init, headers: { ...init.headers, authorization: `Bearer ${token}` } });
      statuses.push(response.status);
      return response;
    },
  });
  source.addEventListener('message', (event) => events.push({ lastEventId: event.lastEventId, ...JSON.parse(event.data) }));
  return { source, events, statuses, lastEventIds, close: () => source.close() };
}

const tokenOf = (url: string) => decodeURIComponent(new URL(url).hash.slice(1));

describe.each(backends())('web chat over real HTTP on $name', (backend) => {
  let h: Harness;
  const streams: Array<{ close(): void }> = [];
  beforeEach(async () => {
    h = await startHarness(backend, { webchat: true, fake: { autoStatuses: ['sent', 'delivered'], autoStatusDelayMs: 5 } });
  });
  afterEach(async () => {
    for (const stream of streams.splice(0)) stream.close();
    await h.close();
  });

  async function patientBySms(phone: string) {
    const ada = await h.createCoordinator({ name: 'Ada' });
    expect((await h.sendSms(phone, 'hello by sms')).status).toBe(200);
    const inbox = await h.api('GET', '/api/inbox', { token: ada.token });
    return { ada, patientId: inbox.json.patients[0].patientId as string };
  }

  const post = (path: string, token: string, body: unknown) => h.api('POST', path, { token, body });

  it('link by SMS → page → patient writes → coordinator replies on webchat → stream → receipts', async () => {
    const { ada, patientId } = await patientBySms('+15550001111');
    await h.startRelay();

    const link = await h.api('POST', `/api/patients/${patientId}/webchat-link`, { token: ada.token, body: { send: true } });
    expect(link.status).toBe(201);
    expect(link.json.message).toMatchObject({ channel: 'sms', address: '+15550001111' });
    const sms = await eventually(() => h.fake.received.find((m) => m.body.includes('/chat#')), { timeoutMs: SLOW_MACHINE_WAIT_MS, what: 'link SMS' });
    expect(sms.body).toContain(link.json.url);
    const token = tokenOf(link.json.url);

    const page = await fetch(`${h.baseUrl}/chat`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain("/chat/chat.js");
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(page.headers.get('content-security-policy')).not.toContain('unsafe-inline');
    const script = await (await fetch(`${h.baseUrl}/chat/chat.js`)).text();
    expect(script).toContain('textContent');
    expect(script).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write/);

    const stream = openStream(h.baseUrl, token);
    streams.push(stream);
    const sent = await post('/chat/api/messages', token, { clientMessageId: 'client-0001', body: 'Hi from the <b>web</b>' });
    expect(sent.status).toBe(201);
    const again = await post('/chat/api/messages', token, { clientMessageId: 'client-0001', body: 'Hi from the <b>web</b>' });
    expect(again.status).toBe(200);
    expect(again.json).toMatchObject({ duplicate: true, messageId: sent.json.messageId });
    await eventually(() => stream.events.length >= 1, { timeoutMs: SLOW_MACHINE_WAIT_MS, what: 'inbound on stream' });
    expect(stream.events[0]).toMatchObject({ seq: 1, lastEventId: '1', direction: 'inbound', body: 'Hi from the <b>web</b>', clientMessageId: 'client-0001' });

    const reply = await h.api('POST', `/api/patients/${patientId}/messages`, { token: ada.token, body: { body: 'Hello on web chat' } });
    expect(reply.status).toBe(201);
    expect(reply.json).toMatchObject({ channel: 'webchat', address: `patient:${patientId}`, channelReason: 'last used webchat' });
    await eventually(() => stream.events.length >= 2, { timeoutMs: SLOW_MACHINE_WAIT_MS, what: 'reply on stream' });
    expect(stream.events[1]).toMatchObject({ seq: 2, direction: 'outbound', body: 'Hello on web chat', id: reply.json.messageId });

    const receipt = await post('/chat/api/receipts', token, { messageIds: [reply.json.messageId, sent.json.messageId], status: 'read' });
    expect(receipt.json).toEqual({ applied: 1 });
    const timeline = await eventually(async () => {
      const items = (await h.api('GET', `/api/patients/${patientId}/timeline`, { token: ada.token })).json.items as any[];
      const out = items.find((i) => i.id === reply.json.messageId);
      return out?.status === 'read' ? items : null;
    }, { timeoutMs: SLOW_MACHINE_WAIT_MS, what: 'reply read' });
    const webchatInbound = timeline.filter((i) => i.type === 'message' && i.channel === 'webchat' && i.direction === 'inbound');
    expect(webchatInbound).toHaveLength(1);
    expect(webchatInbound[0]).toMatchObject({ provider: 'webchat', address: `patient:${patientId}` });
    // The web chat identity belongs to the same patient: still one patient in the inbox.
    expect((await h.api('GET', '/api/inbox', { token: ada.token })).json.patients).toHaveLength(1);
    expect(stream.events).toHaveLength(2);
  });

  it('a reconnecting client resumes after the last sequence it saw, across a server restart, with no loss or duplicate', async () => {
    const { ada, patientId } = await patientBySms('+15550002222');
    const token = (await issueWebchatLink(h.database.db, TEST_WEBCHAT_SECRET, { patientId, createdBy: null, ttlMs: 3_600_000 })).token;
    await h.startRelay();
    expect((await post('/chat/api/messages', token, { clientMessageId: 'client-a-0001', body: 'one' })).status).toBe(201);
    const stream = openStream(h.baseUrl, token);
    streams.push(stream);
    await eventually(() => stream.events.length === 1, { timeoutMs: SLOW_MACHINE_WAIT_MS, what: 'first event' });

    // Stop the web server under the client's feet; write while it is down (the relay keeps sending replies).
    const port = Number(new URL(h.baseUrl).port);
    await h.web.stop();
    const { createOutbound } = await import('../db/messages.ts');
    for (const body of ['two', 'three', 'four']) await createOutbound(h.database.db, { patientId, authorId: ada.id, body });
    await eventually(async () => (await h.database.db.query(`SELECT 1 FROM webchat_stream_items`)).rowCount === 4, { timeoutMs: SLOW_MACHINE_WAIT_MS, what: 'relay pushed while the page was away' });

    const web = await startWeb({ db: h.database.db, logger: (await import('pino')).default({ level: 'silent' }), adapters: h.adapters, publicBaseUrl: h.baseUrl, tokenTtlMs: 60_000, host: '127.0.0.1', port, webchat: { linkSecret: TEST_WEBCHAT_SECRET, linkTtlMs: 60_000 } });
    try {
      await eventually(() => stream.events.length >= 4, { what: 'replayed events', timeoutMs: SLOW_MACHINE_WAIT_MS });
      expect((await post('/chat/api/messages', token, { clientMessageId: 'client-a-0002', body: 'five' })).status).toBe(201);
      await eventually(() => stream.events.length >= 5, { timeoutMs: SLOW_MACHINE_WAIT_MS, what: 'live event after resume' });
      expect(stream.events.map((e) => [e.seq, e.body])).toEqual([[1, 'one'], [2, 'two'], [3, 'three'], [4, 'four'], [5, 'five']]);
      // It reconnected on its own, saying where it had stopped.
      expect(stream.lastEventIds[0]).toBeUndefined();
      expect(stream.lastEventIds.at(-1)).toBe('1');

      // An explicit resume point: only what came after it.
      const resumed = openStream(h.baseUrl, token, '?after=3');
      streams.push(resumed);
      await eventually(() => resumed.events.length >= 2, { timeoutMs: SLOW_MACHINE_WAIT_MS, what: 'resumed stream' });
      expect(resumed.events.map((e) => e.seq)).toEqual([4, 5]);
    } finally {
      for (const stream of streams.splice(0)) stream.close();
      await web.stop();
    }
  });

  it('refuses expired, tampered and missing links with nothing stored, and bad input with a 4xx', async () => {
    const { patientId } = await patientBySms('+15550003333');
    const expired = (await issueWebchatLink(h.database.db, TEST_WEBCHAT_SECRET, { patientId, createdBy: null, ttlMs: -1000 })).token;
    const valid = (await issueWebchatLink(h.database.db, TEST_WEBCHAT_SECRET, { patientId, createdBy: null, ttlMs: 3_600_000 })).token;
    const otherSecret = (await issueWebchatLink(h.database.db, 'another-secret-0123456789abcdef-0123456789', { patientId, createdBy: null, ttlMs: 3_600_000 })).token;
    const tampered = valid.slice(0, -2) + (valid.endsWith('AA') ? 'BB' : 'AA');
    const count = async () => Number((await h.database.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM messages`)).rows[0]!.n);
    const before = await count();

    for (const token of [expired, otherSecret, tampered]) {
      const message = await post('/chat/api/messages', token, { clientMessageId: 'client-x-0001', body: 'let me in' });
      expect(message.status).toBe(403);
      const stream = await fetch(`${h.baseUrl}/chat/api/stream`, { headers: { authorization: `Bearer ${token}` } });
      expect(stream.status).toBe(403);
      await stream.body?.cancel();
    }
    expect((await post('/chat/api/messages', '', { clientMessageId: 'client-x-0001', body: 'x' })).status).toBe(401);
    expect((await h.api('POST', '/chat/api/messages', { token: valid, rawBody: '{"clientMessageId":', contentType: 'application/json' })).status).toBe(400);
    expect((await post('/chat/api/messages', valid, { clientMessageId: 'bad id!', body: 'x' })).status).toBe(400);
    expect((await post('/chat/api/messages', valid, { clientMessageId: 'client-x-0002', body: '   ' })).status).toBe(400);
    expect((await post('/chat/api/messages', valid, { clientMessageId: 'client-x-0003', body: 'x'.repeat(4001) })).status).toBe(400);
    expect((await post('/chat/api/messages', valid, { clientMessageId: 'client-x-0004', body: 'x'.repeat(20_000) })).status).toBe(413);
    expect((await post('/chat/api/receipts', valid, { messageIds: ['not-a-uuid'], status: 'read' })).status).toBe(400);

    expect(await count()).toBe(before);
    const identities = await h.database.db.query(`SELECT 1 FROM channel_identities WHERE channel = 'webchat'`);
    expect(identities.rowCount).toBe(0);
  });

  it('ends an open stream when its link expires; the reconnect is refused', async () => {
    const { patientId } = await patientBySms('+15550006666');
    const port = await freePort();
    const baseUrl = `http://127.0.0.1:${port}`;
    const pino = (await import('pino')).default;
    const web = await startWeb({ db: h.database.db, logger: pino({ level: 'silent' }), adapters: h.adapters, publicBaseUrl: baseUrl, tokenTtlMs: 60_000, host: '127.0.0.1', port, webchat: { linkSecret: TEST_WEBCHAT_SECRET, linkTtlMs: 60_000, heartbeatMs: 100 } });
    try {
      const token = (await issueWebchatLink(h.database.db, TEST_WEBCHAT_SECRET, { patientId, createdBy: null, ttlMs: 2_500 })).token;
      const stream = openStream(baseUrl, token);
      streams.push(stream);
      await eventually(() => stream.statuses[0] === 200, { timeoutMs: SLOW_MACHINE_WAIT_MS, what: 'stream open' });
      await eventually(() => stream.statuses.includes(403), { what: 'reconnect refused after expiry', timeoutMs: SLOW_MACHINE_WAIT_MS });
      expect(stream.source.readyState).toBe(stream.source.CLOSED);
    } finally {
      for (const stream of streams.splice(0)) stream.close();
      await web.stop();
    }
  });

  it('only a coordinator who may see the patient can make a link', async () => {
    const { patientId } = await patientBySms('+15550004444');
    const grace = await h.createCoordinator({ name: 'Grace' });
    expect((await h.api('POST', `/api/patients/${patientId}/webchat-link`, { token: grace.token, body: {} })).status).toBe(404);
    expect((await h.api('POST', `/api/patients/${patientId}/webchat-link`, { body: {} })).status).toBe(401);
  });
});

describe.skipIf(!isPostgresAvailable())('web chat fan-out across processes (PostgreSQL only)', () => {
  let h: Harness;
  let child: ChildProcess | undefined;
  const streams: Array<{ close(): void }> = [];
  beforeEach(async () => {
    h = await startHarness(postgresBackend, { webchat: true });
  });
  afterEach(async () => {
    for (const stream of streams.splice(0)) stream.close();
    child?.kill('SIGKILL');
    await h.close();
  });

  it('a message written through one process appears on a stream served by another', async () => {
    const port = await freePort();
    const otherUrl = `http://127.0.0.1:${port}`;
    child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', '--role', 'web'], {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'inherit'],
      env: {
        PATH: process.env.PATH,
        PORT: String(port),
        DATABASE_URL: h.database.url,
        DATABASE_POOL_SIZE: '4',
        TWILIO_ACCOUNT_SID: TEST_TWILIO.accountSid,
        TWILIO_AUTH_TOKEN: TEST_TWILIO.authToken,
        TWILIO_FROM_NUMBER: TEST_TWILIO.fromNumber,
        TWILIO_API_BASE: h.fake.url,
        WEBCHAT_LINK_SECRET: TEST_WEBCHAT_SECRET,
        SMTP_LISTEN_PORT: 'off',
        LOG_LEVEL: 'fatal',
      },
    });
    await eventually(async () => (await fetch(`${otherUrl}/api/health`)).ok, { what: 'second process up', timeoutMs: SLOW_MACHINE_WAIT_MS });

    const ada = await h.createCoordinator({ name: 'Ada' });
    expect((await h.sendSms('+15550005555', 'hi')).status).toBe(200);
    const patientId = (await h.api('GET', '/api/inbox', { token: ada.token })).json.patients[0].patientId as string;
    const token = (await issueWebchatLink(h.database.db, TEST_WEBCHAT_SECRET, { patientId, createdBy: null, ttlMs: 3_600_000 })).token;

    const stream = openStream(otherUrl, token);
    streams.push(stream);
    await eventually(() => stream.statuses[0] === 200, { timeoutMs: SLOW_MACHINE_WAIT_MS, what: 'stream open on the other process' });
    // Written through this process (the harness's app and relay); served live by the child.
    expect((await h.api('POST', '/chat/api/messages', { token, body: { clientMessageId: 'cross-0001', body: 'from process A' } })).status).toBe(201);
    await eventually(() => stream.events.length >= 1, { timeoutMs: SLOW_MACHINE_WAIT_MS, what: 'inbound fanned out' });
    await h.startRelay();
    expect((await h.api('POST', `/api/patients/${patientId}/messages`, { token: ada.token, body: { body: 'reply via A' } })).status).toBe(201);
    await eventually(() => stream.events.length >= 2, { timeoutMs: SLOW_MACHINE_WAIT_MS, what: 'reply fanned out' });
    expect(stream.events.map((e) => [e.seq, e.direction, e.body])).toEqual([[1, 'inbound', 'from process A'], [2, 'outbound', 'reply via A']]);
  });
});
