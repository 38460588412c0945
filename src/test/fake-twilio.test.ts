import { request as httpRequest, createServer, type IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import twilio from 'twilio';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTwilioClient } from '../channels/twilio-client.ts';
import { signTwilioRequest, startFakeTwilio, type FakeTwilio, type FakeTwilioOptions } from './fake-twilio.ts';

const ACCOUNT_SID = 'AC' + '0123456789abcdef'.repeat(2);
const AUTH_TOKEN = 'fake_twilio_test_token_0123456789';
const FROM = '+15005550006';
const PATIENT = '+15551234567';
const OTHER_PATIENT = '+15557654321';
const MESSAGES_PATH = `/2010-04-01/Accounts/${ACCOUNT_SID}/Messages.json`;
const BASIC_AUTH = 'Basic ' + Buffer.from(`${ACCOUNT_SID}:${AUTH_TOKEN}`).toString('base64');

type Params = Record<string, string | string[]>;

function parseForm(raw: string): Params {
  const params: Params = {};
  for (const [key, value] of new URLSearchParams(raw)) {
    const existing = params[key];
    params[key] = existing === undefined ? value : Array.isArray(existing) ? [...existing, value] : [existing, value];
  }
  return params;
}

interface Captured {
  path: string;
  headers: IncomingHttpHeaders;
  params: Params;
}

/** Our side of a webhook: records each request and answers with `answer`. */
async function startReceiver(answer: { status: number; body: string } = { status: 200, body: '<Response/>' }) {
  const requests: Captured[] = [];
  const waiters: Array<{ count: number; resolve: (all: Captured[]) => void }> = [];
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      requests.push({ path: req.url ?? '/', headers: req.headers, params: parseForm(Buffer.concat(chunks).toString('utf8')) });
      for (const waiter of waiters.filter((w) => requests.length >= w.count)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(requests);
      }
      res.writeHead(answer.status, { 'content-type': 'text/xml' }).end(answer.body);
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('receiver has no port');
  return {
    url: `http://127.0.0.1:${address.port}`,
    requests,
    waitFor(count: number): Promise<Captured[]> {
      if (requests.length >= count) return Promise.resolve(requests);
      return new Promise((resolve) => waiters.push({ count, resolve }));
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const signatureOf = (captured: Captured) => String(captured.headers['x-twilio-signature']);

async function eventually<T>(check: () => Promise<T | undefined> | T | undefined, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function rejection(promise: Promise<unknown>): Promise<any> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('signTwilioRequest', () => {
  const vectorUrl = 'https://mycompany.com/myapp.php?foo=1&bar=2';
  const vectorParams = { CallSid: 'CA1234567890ABCDE', Caller: '+14158675309', Digits: '1234', From: '+14158675309', To: '+18005551212' };

  it("reproduces twilio-node's published vectors (providers.md §2)", () => {
    expect(signTwilioRequest('12345', vectorUrl, vectorParams)).toBe('RSOYDt4T1cUTdK1PDd93/VVr8B8=');
    expect(signTwilioRequest('12345', 'https://mycompany.com:443/myapp.php?foo=1&bar=2', vectorParams)).toBe('kvajT1Ptam85bY51eRf/AJRuM3w=');
    // providers.md lists this one under `http://`; it is the hash of the :80 form, which validateRequest also tries.
    expect(signTwilioRequest('12345', 'http://mycompany.com:80/myapp.php?foo=1&bar=2', vectorParams)).toBe('0ZXoZLH/DfblKGATFgpif+LLRf4=');
    expect(twilio.validateRequest('12345', '0ZXoZLH/DfblKGATFgpif+LLRf4=', 'http://mycompany.com/myapp.php?foo=1&bar=2', vectorParams)).toBe(true);
    expect(signTwilioRequest('12345', vectorUrl, { 'MessagingBinding.Address': ['+1325xxxxxxx', '+1415xxxxxxx'] })).toBe('83O6e2vORAoJHUNzJjDWN1jz+BA=');
  });

  it('reproduces our SMS vector (providers.md §2)', () => {
    const params = { AccountSid: 'AC' + '0'.repeat(32), Body: 'STOP', From: '+15551234567', MessageSid: 'SM' + '1'.repeat(32), NumMedia: '0', To: '+15005550006' };
    expect(signTwilioRequest('test_auth_token_0123456789abcdef', 'https://example.test/webhooks/twilio/sms', params)).toBe('yhCnMBtUmeq9OGp39z4x+ZylAQ8=');
  });

  it('agrees with twilio-node on unicode and repeated keys', () => {
    const params = { Body: 'Hi, can I reschedule? 🙂 café', MediaUrl: ['https://b.test/2', 'https://a.test/1', 'https://a.test/1'], a: 'lower sorts after upper' };
    const url = 'https://example.test/hook?x=1';
    expect(signTwilioRequest(AUTH_TOKEN, url, params)).toBe(twilio.getExpectedTwilioSignature(AUTH_TOKEN, url, params));
  });
});

describe('fake Twilio through the official SDK', () => {
  let fake: FakeTwilio;
  let client: ReturnType<typeof createTwilioClient>;
  const cleanups: Array<() => Promise<void>> = [];

  async function start(options: Partial<FakeTwilioOptions> = {}) {
    fake = await startFakeTwilio({ accountSid: ACCOUNT_SID, authToken: AUTH_TOKEN, ...options });
    client = createTwilioClient({ accountSid: ACCOUNT_SID, authToken: AUTH_TOKEN, apiBase: fake.url, timeoutMs: 5_000 });
    return fake;
  }

  async function receiver(answer?: { status: number; body: string }) {
    const started = await startReceiver(answer);
    cleanups.push(started.close);
    return started;
  }

  const send = (body: string, to = PATIENT, extra: Record<string, unknown> = {}) => client.messages.create({ from: FROM, to, body, ...extra });

  const rawApi = (path: string, init: RequestInit = {}) =>
    fetch(fake.url + path, { ...init, headers: { authorization: BASIC_AUTH, ...(init.headers as Record<string, string> | undefined) } });

  const control = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(fake.url + path, { method, ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) }) });
    return { status: response.status, json: await response.json() };
  };

  beforeEach(async () => {
    await start();
  });

  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    await fake.close();
  });

  describe('Messages.create', () => {
    it('answers 201 with a full message and records the exact wire form', async () => {
      const body = 'Your visit is confirmed 🙂 — café at 3pm';
      const media = ['https://media.example/a.jpg?sig=1&x=2', 'https://media.example/b.png'];
      const created = await client.messages.create({ from: FROM, to: PATIENT, body, mediaUrl: media, statusCallback: 'https://app.example/webhooks/twilio/status' });

      expect(created.sid).toMatch(/^SM[0-9a-f]{32}$/);
      expect(created).toMatchObject({
        accountSid: ACCOUNT_SID,
        apiVersion: '2010-04-01',
        body,
        direction: 'outbound-api',
        errorCode: null,
        errorMessage: null,
        from: FROM,
        to: PATIENT,
        messagingServiceSid: null,
        numMedia: '2',
        numSegments: '1',
        price: null,
        priceUnit: 'USD',
        status: 'queued',
        uri: `/2010-04-01/Accounts/${ACCOUNT_SID}/Messages/${created.sid}.json`,
      });
      expect(created.subresourceUris).toMatchObject({ media: `/2010-04-01/Accounts/${ACCOUNT_SID}/Messages/${created.sid}/Media.json` });
      for (const date of [created.dateCreated, created.dateUpdated, created.dateSent]) {
        expect(date).toBeInstanceOf(Date);
        expect(Number.isNaN(date.getTime())).toBe(false);
      }

      expect(fake.received).toHaveLength(1);
      expect(fake.received[0]).toMatchObject({
        sid: created.sid,
        accountSid: ACCOUNT_SID,
        to: PATIENT,
        from: FROM,
        body,
        mediaUrls: media,
        statusCallback: 'https://app.example/webhooks/twilio/status',
      });
      expect(fake.received[0]!.form).toEqual({ To: PATIENT, From: FROM, Body: body, MediaUrl: media, StatusCallback: 'https://app.example/webhooks/twilio/status' });
      expect(fake.received[0]!.receivedAtMs).toBeGreaterThan(performance.timeOrigin);
    });

    it("is 'accepted' with a Messaging Service and no From", async () => {
      const messagingServiceSid = 'MG' + 'b'.repeat(32);
      const created = await client.messages.create({ messagingServiceSid, to: PATIENT, body: 'hi' });
      expect(created).toMatchObject({ status: 'accepted', messagingServiceSid, from: null });
      expect(fake.received[0]).toMatchObject({ messagingServiceSid, body: 'hi' });
      expect(fake.received[0]!.from).toBeUndefined();
    });

    it('counts segments as carriers do', async () => {
      expect((await send('a'.repeat(160))).numSegments).toBe('1');
      expect((await send('a'.repeat(161))).numSegments).toBe('2');
      expect((await send('é'.repeat(70) + '🙂')).numSegments).toBe('2');
    });

    it('rejects a bad To with 21211, missing fields and an over-long body as Twilio does', async () => {
      const invalid = await rejection(send('hi', '5551234567'));
      expect(invalid).toBeInstanceOf(twilio.RestException);
      expect(invalid).toMatchObject({ status: 400, code: 21211, moreInfo: 'https://www.twilio.com/docs/errors/21211' });
      expect(await rejection(client.messages.create({ to: PATIENT, body: 'no sender' } as never))).toMatchObject({ status: 400, code: 21603 });
      expect(await rejection(client.messages.create({ from: FROM, to: PATIENT }))).toMatchObject({ status: 400, code: 21619 });
      expect(await rejection(send('x'.repeat(1601)))).toMatchObject({ status: 400, code: 21617 });
      expect(fake.received).toHaveLength(0);
    });

    it('refuses opted-out recipients with 21610 until they opt back in', async () => {
      fake.optOut(PATIENT);
      const refused = await rejection(send('hello'));
      expect(refused).toBeInstanceOf(twilio.RestException);
      expect(refused).toMatchObject({ status: 400, code: 21610, message: 'Attempt to send to unsubscribed recipient' });
      expect((await send('hello', OTHER_PATIENT)).status).toBe('queued');
      fake.optIn(PATIENT);
      expect((await send('hello again')).status).toBe('queued');
      expect(fake.received.map((m) => m.to)).toEqual([OTHER_PATIENT, PATIENT]);
    });

    it('opts a sender out when they text STOP and back in on START', async () => {
      const app = await receiver();
      await fake.sendInboundSms({ webhookUrl: app.url, from: PATIENT, to: FROM, body: ' stop ' });
      expect(await rejection(send('still there?'))).toMatchObject({ code: 21610 });
      await fake.sendInboundSms({ webhookUrl: app.url, from: PATIENT, to: FROM, body: 'STOP PLEASE' });
      expect(await rejection(send('still there?'))).toMatchObject({ code: 21610 });
      await fake.sendInboundSms({ webhookUrl: app.url, from: PATIENT, to: FROM, body: 'START' });
      expect((await send('welcome back')).status).toBe('queued');
    });

    it('answers 401 / 20003 to wrong credentials and 404 to another account', async () => {
      const wrong = createTwilioClient({ accountSid: ACCOUNT_SID, authToken: 'not-the-token', apiBase: fake.url });
      const error = await rejection(wrong.messages.create({ from: FROM, to: PATIENT, body: 'hi' }));
      expect(error).toBeInstanceOf(twilio.RestException);
      expect(error).toMatchObject({ status: 401, code: 20003 });
      expect((await fetch(fake.url + MESSAGES_PATH)).status).toBe(401);

      const otherAccount = await rawApi(`/2010-04-01/Accounts/AC${'f'.repeat(32)}/Messages.json`);
      expect(otherAccount.status).toBe(404);
      expect(await otherAccount.json()).toMatchObject({ code: 20404, status: 404 });
      expect(fake.received).toHaveLength(0);
    });

    it('answers anything else with Twilio-shaped 404 / 405 JSON', async () => {
      const calls = await rawApi(`/2010-04-01/Accounts/${ACCOUNT_SID}/Calls.json`);
      expect(calls.status).toBe(404);
      expect(await calls.json()).toEqual({ code: 20404, message: expect.any(String), more_info: 'https://www.twilio.com/docs/errors/20404', status: 404 });
      const put = await rawApi(MESSAGES_PATH, { method: 'PUT' });
      expect(put.status).toBe(405);
      expect(await put.json()).toMatchObject({ code: 20004 });
    });
  });

  describe('fetch and list', () => {
    it('fetches a message by sid, and 404s an unknown one', async () => {
      const created = await send('fetch me');
      const fetched = await client.messages(created.sid).fetch();
      expect(fetched).toMatchObject({ sid: created.sid, body: 'fetch me', to: PATIENT, from: FROM, status: 'queued' });
      const missing = await rejection(client.messages('SM' + '0'.repeat(32)).fetch());
      expect(missing).toBeInstanceOf(twilio.RestException);
      expect(missing).toMatchObject({ status: 404, code: 20404 });
    });

    it('lists newest first with To/From filters, following next_page_uri', async () => {
      const sids: string[] = [];
      for (let i = 0; i < 12; i++) sids.push((await send(`message ${i}`)).sid);
      for (let i = 0; i < 3; i++) await send(`other ${i}`, OTHER_PATIENT);
      await client.messages.create({ from: '+15005550001', to: PATIENT, body: 'from another number' });

      const all = await client.messages.list({ to: PATIENT, from: FROM, pageSize: 5 });
      expect(all.map((m) => m.sid)).toEqual([...sids].reverse());
      expect(await client.messages.list({ to: PATIENT, from: FROM, pageSize: 5, limit: 7 })).toHaveLength(7);
      expect(await client.messages.list({ to: PATIENT })).toHaveLength(13);
      expect(await client.messages.list({ to: OTHER_PATIENT, limit: 100 })).toHaveLength(3);
      expect(await client.messages.list({ from: '+15005550001' })).toHaveLength(1);
      expect(await client.messages.list({ to: '+15550000000' })).toEqual([]);

      const first = await client.messages.page({ to: PATIENT, from: FROM, pageSize: 5 });
      expect(first.instances).toHaveLength(5);
      const second = await first.nextPage();
      expect(second!.instances.map((m) => m.sid)).toEqual(sids.slice(2, 7).reverse());
      const third = await second!.nextPage();
      expect(third!.instances.map((m) => m.sid)).toEqual(sids.slice(0, 2).reverse());
      expect(third!.nextPageUrl).toBeUndefined();
      const back = await third!.previousPage();
      expect(back!.instances.map((m) => m.sid)).toEqual(sids.slice(2, 7).reverse());
    });

    it('filters on DateSent, DateSent> and DateSent< (date-only and date-time)', async () => {
      await send('one');
      await send('two');
      const dayMs = 86_400_000;
      expect(await client.messages.list({ to: PATIENT, dateSentAfter: new Date(Date.now() - 60_000) })).toHaveLength(2);
      expect(await client.messages.list({ to: PATIENT, dateSentAfter: new Date(Date.now() + dayMs) })).toEqual([]);
      expect(await client.messages.list({ to: PATIENT, dateSentBefore: new Date(Date.now() - dayMs) })).toEqual([]);
      expect(await client.messages.list({ to: PATIENT, dateSentBefore: new Date(Date.now() + dayMs) })).toHaveLength(2);

      const today = new Date().toISOString().slice(0, 10);
      const tomorrow = new Date(Date.now() + dayMs).toISOString().slice(0, 10);
      const count = async (query: Record<string, string>) => {
        const response = await rawApi(`${MESSAGES_PATH}?${new URLSearchParams(query)}`);
        expect(response.status).toBe(200);
        return ((await response.json()) as { messages: unknown[] }).messages.length;
      };
      expect(await count({ DateSent: today })).toBe(2);
      expect(await count({ 'DateSent>': today })).toBe(2);
      expect(await count({ 'DateSent<': today })).toBe(2);
      expect(await count({ 'DateSent>': tomorrow })).toBe(0);
      expect((await rawApi(`${MESSAGES_PATH}?${new URLSearchParams({ DateSent: 'last tuesday' })}`)).status).toBe(400);
    });

    it("pages in Twilio's list envelope", async () => {
      for (let i = 0; i < 3; i++) await send(`m${i}`);
      const response = await rawApi(`${MESSAGES_PATH}?To=${encodeURIComponent(PATIENT)}&PageSize=2`);
      const page = (await response.json()) as Record<string, any>;
      expect(Object.keys(page).sort()).toEqual(['end', 'first_page_uri', 'messages', 'next_page_uri', 'page', 'page_size', 'previous_page_uri', 'start', 'uri']);
      expect(page).toMatchObject({ page: 0, page_size: 2, start: 0, end: 1, previous_page_uri: null });
      expect(page.first_page_uri).toMatch(/^\/2010-04-01\/Accounts\/AC[0-9a-f]{32}\/Messages\.json\?To=%2B15551234567&PageSize=2&Page=0$/);
      expect(page.next_page_uri).toMatch(/&Page=1&PageToken=PASM[0-9a-f]{32}$/);
      const next = (await (await rawApi(page.next_page_uri)).json()) as Record<string, any>;
      expect(next).toMatchObject({ page: 1, start: 2, end: 2, next_page_uri: null });
      expect(next.messages.map((m: any) => m.body)).toEqual(['m0']);
    });
  });

  describe('one-shot faults', () => {
    it.each([
      [429, 20429],
      [500, 20500],
      [502, 20500],
      [503, 20503],
    ] as const)('status %i surfaces as a RestException and creates nothing', async (status, code) => {
      fake.enqueueFault({ kind: 'status', status });
      const error = await rejection(send('faulted'));
      expect(error).toBeInstanceOf(twilio.RestException);
      expect(error).toMatchObject({ status, code });
      expect(fake.received).toHaveLength(0);
      expect((await send('next one')).status).toBe('queued');
      expect(fake.received.map((m) => m.body)).toEqual(['next one']);
    });

    it('applies queued faults in FIFO order, one per create', async () => {
      fake.enqueueFault({ kind: 'status', status: 429 });
      fake.enqueueFault({ kind: 'status', status: 503 });
      expect(await rejection(send('a'))).toMatchObject({ status: 429 });
      expect(await rejection(send('b'))).toMatchObject({ status: 503 });
      await send('c');
      expect(fake.received.map((m) => m.body)).toEqual(['c']);
    });

    it('does not spend a fault on a request with wrong credentials or on fetch/list', async () => {
      fake.enqueueFault({ kind: 'status', status: 500 });
      const wrong = createTwilioClient({ accountSid: ACCOUNT_SID, authToken: 'nope', apiBase: fake.url });
      expect(await rejection(wrong.messages.create({ from: FROM, to: PATIENT, body: 'x' }))).toMatchObject({ status: 401 });
      await client.messages.list({ to: PATIENT });
      expect(await rejection(send('y'))).toMatchObject({ status: 500 });
    });

    it('latency delays the answer', async () => {
      fake.enqueueFault({ kind: 'latency', ms: 150 });
      const startedAt = performance.now();
      expect((await send('slow')).status).toBe('queued');
      expect(performance.now() - startedAt).toBeGreaterThanOrEqual(140);
    });

    it('timeout never answers, so the SDK gives up at its own timeout', async () => {
      const impatient = createTwilioClient({ accountSid: ACCOUNT_SID, authToken: AUTH_TOKEN, apiBase: fake.url, timeoutMs: 300 });
      fake.enqueueFault({ kind: 'timeout' });
      const startedAt = performance.now();
      const error = await rejection(impatient.messages.create({ from: FROM, to: PATIENT, body: 'into the void' }));
      const elapsedMs = performance.now() - startedAt;
      expect(error).not.toBeInstanceOf(twilio.RestException);
      expect(['ECONNABORTED', 'ETIMEDOUT']).toContain(error.code);
      expect(elapsedMs).toBeGreaterThanOrEqual(290);
      expect(fake.received).toHaveLength(0);
      expect((await impatient.messages.create({ from: FROM, to: PATIENT, body: 'after' })).status).toBe('queued');
    });

    it('drop-after-accept: the SDK errors, yet the message was created and can be found', async () => {
      fake.enqueueFault({ kind: 'drop-after-accept' });
      const error = await rejection(send('did it go?'));
      expect(error).not.toBeInstanceOf(twilio.RestException);
      expect(fake.received).toHaveLength(1);
      const [found] = await client.messages.list({ to: PATIENT, from: FROM, limit: 20 });
      expect(found).toMatchObject({ sid: fake.received[0]!.sid, body: 'did it go?' });
      expect((await client.messages(found!.sid).fetch()).body).toBe('did it go?');
    });

    it('drop-before-accept: the SDK errors and nothing was created', async () => {
      fake.enqueueFault({ kind: 'drop-before-accept' });
      const error = await rejection(send('lost'));
      expect(error).not.toBeInstanceOf(twilio.RestException);
      expect(fake.received).toHaveLength(0);
      expect(await client.messages.list({ to: PATIENT })).toEqual([]);
    });

    it('close() ends a held request at once', async () => {
      fake.enqueueFault({ kind: 'timeout' });
      const { port } = new URL(fake.url);
      let written!: () => void;
      const sent = new Promise<void>((resolve) => (written = resolve));
      const held = new Promise<string>((resolve) => {
        const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: MESSAGES_PATH, headers: { authorization: BASIC_AUTH, 'content-type': 'application/x-www-form-urlencoded' } });
        req.on('response', () => resolve('answered'));
        req.on('error', (error) => resolve(error.message));
        req.end(new URLSearchParams({ From: FROM, To: PATIENT, Body: 'held' }).toString(), written);
      });
      await sent;
      // The held request took the fault, so the next create goes through normally.
      expect((await send('second')).status).toBe('queued');
      await fake.close();
      expect(await held).toMatch(/socket hang up|ECONNRESET/);
      expect(fake.received.map((m) => m.body)).toEqual(['second']);
    });
  });

  describe('random faults', () => {
    it('rolls the configured faults on every create', async () => {
      fake.setFaults({ rate429: 1 });
      expect(await rejection(send('a'))).toMatchObject({ status: 429, code: 20429 });
      fake.setFaults({ rate5xx: 1 });
      expect([500, 502, 503]).toContain((await rejection(send('b'))).status);
      fake.setFaults({ rateDropBeforeAccept: 1 });
      await rejection(send('c'));
      expect(fake.received).toHaveLength(0);
      fake.setFaults({ rateDropAfterAccept: 1 });
      await rejection(send('d'));
      expect(fake.received.map((m) => m.body)).toEqual(['d']);
      fake.setFaults({ rateTimeout: 1, timeoutHoldMs: 50 });
      await rejection(send('e'));
      fake.setFaults({});
      await send('f');
      expect(fake.received.map((m) => m.body)).toEqual(['d', 'f']);
    });

    it('repeats the same outcomes for the same seed', async () => {
      const outcomes = async () => {
        fake.setFaults({ rate429: 0.3, rate5xx: 0.3, seed: 42 });
        const statuses: Array<number | string> = [];
        for (let i = 0; i < 12; i++) statuses.push(await send(`s${i}`).then((m) => m.status, (e: { status: number }) => e.status));
        return statuses;
      };
      const firstRun = await outcomes();
      expect(new Set(firstRun).size).toBeGreaterThan(1);
      expect(await outcomes()).toEqual(firstRun);
    });

    it('refuses an invalid config', () => {
      expect(() => fake.setFaults({ rate429: 0.6, rate5xx: 0.6 })).toThrow(/sum/);
      expect(() => fake.setFaults({ latencyMs: [50, 10] })).toThrow();
    });
  });

  describe('webhooks the fake sends', () => {
    it('signs inbound SMS exactly as Twilio does, over the public URL', async () => {
      const app = await receiver();
      const publicUrl = 'https://switchboard.example/webhooks/twilio/sms?clinic=1';
      const body = 'Hi, can I reschedule? 🙂 café & more';
      const media = ['https://api.twilio.com/2010-04-01/Accounts/AC/Messages/MM/Media/ME1.jpg', 'https://media.example/scan.pdf'];
      const result = await fake.sendInboundSms({ webhookUrl: `${app.url}/webhooks/twilio/sms?clinic=1`, signatureUrl: publicUrl, from: PATIENT, to: FROM, body, mediaUrls: media });

      expect(result).toMatchObject({ status: 200, body: '<Response/>' });
      expect(result.messageSid).toMatch(/^MM[0-9a-f]{32}$/);
      const [captured] = await app.waitFor(1);
      expect(captured!.path).toBe('/webhooks/twilio/sms?clinic=1');
      expect(captured!.headers['content-type']).toBe('application/x-www-form-urlencoded');
      expect(captured!.params).toMatchObject({
        MessageSid: result.messageSid,
        SmsSid: result.messageSid,
        SmsMessageSid: result.messageSid,
        AccountSid: ACCOUNT_SID,
        From: PATIENT,
        To: FROM,
        Body: body,
        NumMedia: '2',
        SmsStatus: 'received',
        ApiVersion: '2010-04-01',
        MediaUrl0: media[0],
        MediaContentType0: 'image/jpeg',
        MediaUrl1: media[1],
        MediaContentType1: 'application/pdf',
      });
      expect(twilio.validateRequest(AUTH_TOKEN, signatureOf(captured!), publicUrl, captured!.params)).toBe(true);
      expect(twilio.validateRequest('another-token', signatureOf(captured!), publicUrl, captured!.params)).toBe(false);
      expect(twilio.validateRequest(AUTH_TOKEN, signatureOf(captured!), publicUrl, { ...captured!.params, Body: 'tampered' })).toBe(false);

      const inbound = await client.messages(result.messageSid).fetch();
      expect(inbound).toMatchObject({ direction: 'inbound', status: 'received', from: PATIENT, to: FROM, body });
    });

    it('signs over the webhook URL itself when no signatureUrl is given, and reports our answer', async () => {
      const app = await receiver({ status: 403, body: '{"code":"signature_invalid"}' });
      const result = await fake.sendInboundSms({ webhookUrl: `${app.url}/sms`, from: PATIENT, to: FROM, body: 'hello', messageSid: 'SM' + 'c'.repeat(32) });
      expect(result).toEqual({ status: 403, body: '{"code":"signature_invalid"}', messageSid: 'SM' + 'c'.repeat(32) });
      const [captured] = await app.waitFor(1);
      expect(twilio.validateRequest(AUTH_TOKEN, signatureOf(captured!), `${app.url}/sms`, captured!.params)).toBe(true);
    });

    it('sends signed status callbacks for autoStatuses and updates the stored status', async () => {
      await fake.close();
      await start({ autoStatuses: ['sent', 'delivered'], autoStatusDelayMs: 5 });
      const app = await receiver();
      const created = await send('track me', PATIENT, { statusCallback: `${app.url}/status` });
      const callbacks = await app.waitFor(2);

      expect(callbacks.map((c) => c.params.MessageStatus)).toEqual(['sent', 'delivered']);
      for (const callback of callbacks) {
        expect(callback.params).toEqual({
          MessageSid: created.sid,
          SmsSid: created.sid,
          MessageStatus: callback.params.MessageStatus,
          SmsStatus: callback.params.MessageStatus,
          AccountSid: ACCOUNT_SID,
          From: FROM,
          To: PATIENT,
          ApiVersion: '2010-04-01',
        });
        expect(twilio.validateRequest(AUTH_TOKEN, signatureOf(callback), `${app.url}/status`, callback.params)).toBe(true);
      }
      expect((await client.messages(created.sid).fetch()).status).toBe('delivered');
    });

    it('adds ErrorCode to failed/undelivered callbacks and survives an unreachable callback URL', async () => {
      await fake.close();
      await start({ autoStatuses: ['failed'] });
      const app = await receiver();
      const failed = await send('doomed', PATIENT, { statusCallback: `${app.url}/status` });
      const [callback] = await app.waitFor(1);
      expect(callback!.params).toMatchObject({ MessageSid: failed.sid, MessageStatus: 'failed', ErrorCode: '30008' });
      expect((await client.messages(failed.sid).fetch()).errorCode).toBe(30008);

      const gone = await startReceiver();
      await gone.close();
      const orphan = await send('nobody listening', PATIENT, { statusCallback: `${gone.url}/status` });
      expect(await eventually(async () => ((await client.messages(orphan.sid).fetch()).status === 'failed' ? true : undefined), 'the orphan to fail')).toBe(true);
      expect((await send('still up')).status).toBe('queued');
    });

    it('sendStatusCallback posts a signed callback on demand', async () => {
      const app = await receiver();
      const created = await send('manual', PATIENT, { statusCallback: `${app.url}/status` });
      expect(await fake.sendStatusCallback({ messageSid: created.sid, status: 'undelivered', errorCode: '30005' })).toEqual({ status: 200 });
      const explicit = `${app.url}/elsewhere`;
      await fake.sendStatusCallback({ messageSid: created.sid, status: 'delivered', url: explicit, signatureUrl: 'https://public.example/elsewhere' });
      const [undelivered, delivered] = await app.waitFor(2);
      expect(undelivered!.params).toMatchObject({ MessageStatus: 'undelivered', ErrorCode: '30005' });
      expect(twilio.validateRequest(AUTH_TOKEN, signatureOf(undelivered!), `${app.url}/status`, undelivered!.params)).toBe(true);
      expect(delivered!.path).toBe('/elsewhere');
      expect(delivered!.params.ErrorCode).toBeUndefined();
      expect(twilio.validateRequest(AUTH_TOKEN, signatureOf(delivered!), 'https://public.example/elsewhere', delivered!.params)).toBe(true);
      expect((await client.messages(created.sid).fetch()).status).toBe('delivered');
      await expect(fake.sendStatusCallback({ messageSid: 'SM' + '9'.repeat(32), status: 'sent' })).rejects.toThrow(/no outbound message/);
    });
  });

  describe('control API over HTTP', () => {
    it('sets, queues and clears faults', async () => {
      expect(await control('POST', '/_fake/faults/enqueue', { kind: 'status', status: 503 })).toEqual({ status: 200, json: { ok: true } });
      expect(await rejection(send('a'))).toMatchObject({ status: 503, code: 20503 });

      expect((await control('POST', '/_fake/faults', { rate429: 1 })).status).toBe(200);
      expect(await rejection(send('b'))).toMatchObject({ status: 429 });
      await control('POST', '/_fake/faults/enqueue', { kind: 'drop-before-accept' });
      expect((await control('DELETE', '/_fake/faults')).status).toBe(200);
      expect((await send('c')).status).toBe('queued');
    });

    it('lists what was received', async () => {
      await send('one');
      await send('two', OTHER_PATIENT, { mediaUrl: ['https://media.example/x.png'] });
      const { status, json } = await control('GET', '/_fake/received');
      expect(status).toBe(200);
      expect(json).toEqual(JSON.parse(JSON.stringify(fake.received)));
      expect(json.map((m: { body: string }) => m.body)).toEqual(['one', 'two']);
    });

    it('opts numbers out and in', async () => {
      await control('POST', '/_fake/opt-out', { phone: PATIENT });
      expect(await rejection(send('a'))).toMatchObject({ code: 21610 });
      await control('POST', '/_fake/opt-in', { phone: PATIENT });
      expect((await send('b')).status).toBe('queued');
    });

    it('delivers signed inbound SMS and status callbacks, answering with our status', async () => {
      const app = await receiver({ status: 202, body: 'ok' });
      const inbound = await control('POST', '/_fake/inbound-sms', { webhookUrl: `${app.url}/sms`, signatureUrl: 'https://public.example/sms', from: PATIENT, to: FROM, body: 'hi there' });
      expect(inbound).toEqual({ status: 202, json: { status: 202, body: 'ok', messageSid: expect.stringMatching(/^SM[0-9a-f]{32}$/) } });
      const [captured] = await app.waitFor(1);
      expect(twilio.validateRequest(AUTH_TOKEN, signatureOf(captured!), 'https://public.example/sms', captured!.params)).toBe(true);

      const created = await send('status me', PATIENT, { statusCallback: `${app.url}/status` });
      expect(await control('POST', '/_fake/status-callback', { messageSid: created.sid, status: 'sent' })).toEqual({ status: 202, json: { status: 202 } });
      expect((await app.waitFor(2))[1]!.params).toMatchObject({ MessageSid: created.sid, MessageStatus: 'sent' });

      const gone = await startReceiver();
      await gone.close();
      const unreachable = await control('POST', '/_fake/inbound-sms', { webhookUrl: gone.url, from: PATIENT, to: FROM, body: 'x' });
      expect(unreachable.status).toBe(502);
    });

    it('answers bad input with 400 JSON', async () => {
      const bad = [
        await control('POST', '/_fake/faults', { rate429: 2 }),
        await control('POST', '/_fake/faults', { rateOops: 0.1 }),
        await control('POST', '/_fake/faults/enqueue', { kind: 'explode' }),
        await control('POST', '/_fake/faults/enqueue', { kind: 'status', status: 418 }),
        await control('POST', '/_fake/faults', 'not json'),
        await control('POST', '/_fake/opt-out', {}),
        await control('POST', '/_fake/inbound-sms', { webhookUrl: 'http://127.0.0.1:1/sms', to: FROM, body: 'no from' }),
        await control('POST', '/_fake/status-callback', { messageSid: 'SM' + '9'.repeat(32), status: 'sent' }),
      ];
      for (const response of bad) {
        expect(response.status).toBe(400);
        expect(response.json).toEqual({ error: expect.any(String) });
      }
      expect((await control('GET', '/_fake/nothing-here')).status).toBe(404);
    });
  });

  describe('robustness', () => {
    it('survives clients hanging up mid-body and mid-answer', async () => {
      const { port } = new URL(fake.url);
      await new Promise<void>((resolve) => {
        const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: MESSAGES_PATH, headers: { authorization: BASIC_AUTH, 'content-length': '1000' } });
        req.on('error', () => resolve());
        req.write('To=%2B1555', () => req.destroy());
      });

      fake.enqueueFault({ kind: 'latency', ms: 100 });
      await new Promise<void>((resolve) => {
        const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: MESSAGES_PATH, headers: { authorization: BASIC_AUTH, 'content-type': 'application/x-www-form-urlencoded' } });
        req.on('error', () => resolve());
        req.end(new URLSearchParams({ From: FROM, To: PATIENT, Body: 'caller hung up' }).toString(), () => req.destroy());
      });
      // A slow Twilio still sends a message whose sender stopped waiting.
      await eventually(() => (fake.received.length === 1 ? true : undefined), 'the abandoned message to be created');
      expect((await send('after the hang-ups')).status).toBe('queued');
      expect(fake.received.map((m) => m.body)).toEqual(['caller hung up', 'after the hang-ups']);
    });
  });
});
